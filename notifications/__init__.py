"""The outbox and its senders: partner webhooks, SMS through Twilio, email over SMTP."""

"""``python -m bench.doubles``: the Twilio double and an SMTP sink in a process of their own.

They run outside the benchmark process so that their threads do not share a GIL with the
dispatcher being measured. The first line printed is a JSON object with their addresses and
credentials; the process then serves until SIGTERM. On SIGUSR1 (and at exit) it prints what
the double and the sink have received so far, as one more JSON line.
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from tests.support import _http
from tests.support.smtp import SMTPSink
from tests.support.twilio_double import TwilioDouble

# socketserver's default listen backlog is 5: under load the double refused connections that the
# real Twilio API would accept, and the dispatcher counted them as transient failures.
_http.Server.request_queue_size = 256
# Twilio's API keeps HTTP/1.1 connections open; a double that closed each one would have the
# dispatcher measure TCP handshakes instead of its own work.
_http.Server.keep_alive = True


def main() -> int:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    report = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: report.set())
    with TwilioDouble() as twilio, SMTPSink() as smtp:
        print(json.dumps({
            "twilio_api_base": twilio.url,
            "twilio_account_sid": twilio.account_sid,
            "twilio_auth_token": twilio.auth_token,
            "twilio_from": twilio.phone_number,
            "smtp_url": smtp.url,
        }), flush=True)
        while not stop.wait(0.1):
            if report.is_set():
                report.clear()
                print(json.dumps({"sms_accepted": len(twilio.messages), "sms_attempts": twilio.attempts,
                                  "emails": len(smtp.messages)}), flush=True)
        print(json.dumps({"exit": True, "sms_accepted": len(twilio.messages), "sms_attempts": twilio.attempts,
                          "emails": len(smtp.messages)}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

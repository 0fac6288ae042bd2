import asyncio
import os
import signal
import smtplib
import subprocess
import sys
import threading
import time
from email.message import EmailMessage
from pathlib import Path

import asyncpg
import psycopg
import pytest

from tests.support.postgres import PostgresCluster, PostgresNotAvailable, postgres_available
from tests.support.smtp import SMTPSink

REPO = Path(__file__).resolve().parents[2]

# --- PostgreSQL --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster():
    with PostgresCluster() as cluster:
        yield cluster


async def fetch(url, query):
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchrow(query)
    finally:
        await connection.close()


def show(url, setting):
    return asyncio.run(fetch(url, f"SHOW {setting}"))[0]


def postmaster_pid(cluster):
    return int((cluster.data_dir / "postmaster.pid").read_text().split()[0])


def is_running(pid):
    """Alive, and on Linux not a zombie waiting for init to reap it."""
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat")
        return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (ProcessLookupError, FileNotFoundError):
        return False


def test_postgres_available_when_a_cluster_can_start(cluster):
    assert postgres_available()


def test_created_database_accepts_asyncpg_connections_as_the_baton_superuser(cluster):
    url = cluster.create_database("asyncpg_check")

    assert url == f"postgresql+asyncpg://baton@127.0.0.1:{cluster.port}/asyncpg_check"
    row = asyncio.run(fetch(cluster.dsn("asyncpg_check", driver=None), "SELECT 1, current_database(), current_user"))
    assert tuple(row) == (1, "asyncpg_check", "baton")


def test_dsn_names_a_sqlalchemy_driver_or_gives_a_plain_libpq_url(cluster):
    cluster.create_database("psycopg_check")
    port = cluster.port

    assert cluster.dsn("psycopg_check", driver="psycopg") == (
        f"postgresql+psycopg://baton@127.0.0.1:{port}/psycopg_check"
    )
    plain = cluster.dsn("psycopg_check", driver=None)
    assert plain == f"postgresql://baton@127.0.0.1:{port}/psycopg_check"
    with psycopg.connect(plain) as connection:
        encoding, collation = connection.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    assert (encoding, collation) == ("UTF8", "C")


def test_cluster_trades_durability_for_speed_by_default(cluster):
    url = cluster.dsn(driver=None)
    assert [show(url, s) for s in ("fsync", "synchronous_commit", "full_page_writes")] == ["off"] * 3
    assert show(url, "max_connections") == "300"
    assert show(url, "listen_addresses") == "127.0.0.1"


def test_create_database_can_copy_a_template(cluster):
    cluster.create_database("template_source")
    asyncio.run(fetch(cluster.dsn("template_source", driver=None), "CREATE TABLE copied (id int)"))

    cluster.create_database("from_template", template="template_source")

    row = asyncio.run(fetch(cluster.dsn("from_template", driver=None), "SELECT to_regclass('copied')"))
    assert row[0] == "copied"


def test_drop_database_disconnects_its_clients_and_removes_it(cluster):
    cluster.create_database("dropped")
    url = cluster.dsn("dropped", driver=None)

    async def scenario():
        held = await asyncpg.connect(url)
        cluster.drop_database("dropped")
        with pytest.raises((asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, OSError)):
            await held.fetchval("SELECT 1")
        with pytest.raises(asyncpg.InvalidCatalogNameError):
            await asyncpg.connect(url)

    asyncio.run(scenario())
    cluster.drop_database("dropped")  # already gone: no error


@pytest.mark.parametrize("name", ['x"; DROP DATABASE postgres; --', "", "1abc", "a-b"])
def test_create_database_refuses_names_that_would_need_quoting(cluster, name):
    with pytest.raises(ValueError, match="database names"):
        cluster.create_database(name)


def test_durable_cluster_keeps_fsync_on_applies_extra_settings_and_stops_for_good():
    cluster = PostgresCluster(
        durable=True, extra_settings={"work_mem": "8MB", "application_name": "it's baton"}
    ).start()
    try:
        url = cluster.dsn(driver=None)
        assert [show(url, s) for s in ("fsync", "synchronous_commit", "full_page_writes")] == ["on"] * 3
        assert show(url, "work_mem") == "8MB"
        assert show(url, "application_name") == "it's baton"
        pid, base_dir = postmaster_pid(cluster), cluster.base_dir
        assert is_running(pid)
    finally:
        cluster.stop()

    assert not is_running(pid)
    assert not base_dir.exists()
    cluster.stop()  # idempotent
    with pytest.raises(RuntimeError, match="not running"):
        cluster.dsn()


def test_missing_initdb_says_to_install_the_postgresql_package(tmp_path):
    cluster = PostgresCluster(bindir=tmp_path)
    with pytest.raises(PostgresNotAvailable, match="install the `postgresql` package"):
        cluster.start()
    assert cluster.base_dir is None


def test_command_line_prints_the_url_and_stops_the_server_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.postgres", "--database", "cli_db"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("postgresql+asyncpg://baton@127.0.0.1:") and url.endswith("/cli_db")
        plain = url.replace("+asyncpg", "")
        assert asyncio.run(fetch(plain, "SELECT current_database()"))[0] == "cli_db"
    finally:
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=30)

    assert returncode == 0, process.stderr.read()
    with pytest.raises(OSError):
        asyncio.run(fetch(plain, "SELECT 1"))


# --- SMTP --------------------------------------------------------------------------------


@pytest.fixture
def sink():
    with SMTPSink() as sink:
        yield sink


def email(subject="Your bag is on its way", to="ada@example.com"):
    message = EmailMessage()
    message["From"] = "Baton <baton@example.org>"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Hello Ada,\nyour bag has been located in Frankfurt.\n")
    return message


def send(sink, message=None, **login):
    with smtplib.SMTP(sink.host, sink.port, timeout=5) as client:
        if login:
            client.login(login["user"], login["password"])
        client.send_message(message or email())


def test_sink_url_names_its_loopback_port(sink):
    assert sink.url == f"smtp://127.0.0.1:{sink.port}"


def test_sink_receives_a_message_sent_with_smtplib_and_parses_it(sink):
    send(sink, email(subject="Votre bagage est arrivé ✈", to="Ada Lovelace <ada@example.com>"))

    [message] = sink.messages
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Votre bagage est arrivé ✈"
    assert message["To"].addresses[0].addr_spec == "ada@example.com"
    assert message.get_content() == "Hello Ada,\nyour bag has been located in Frankfurt.\n"
    [delivery] = sink.deliveries
    assert (delivery.mail_from, delivery.rcpt_tos) == ("baton@example.org", ("ada@example.com",))
    assert b"\r\n" in delivery.raw


def test_wait_for_returns_once_enough_messages_have_arrived(sink):
    threading.Timer(0.2, send, args=(sink,)).start()
    threading.Timer(0.3, send, args=(sink,)).start()

    started = time.monotonic()
    messages = sink.wait_for(2, timeout=10)

    assert len(messages) == 2
    assert time.monotonic() - started < 10


def test_wait_for_raises_timeout_error_when_too_few_messages_arrive(sink):
    send(sink)
    with pytest.raises(TimeoutError, match="expected 2 message"):
        sink.wait_for(2, timeout=0.1)


def test_wait_for_async_leaves_the_event_loop_free_for_the_sender(sink):
    async def scenario():
        waiting = asyncio.create_task(sink.wait_for_async(1, timeout=5))
        await asyncio.sleep(0.05)  # the sender runs on this loop while the sink waits
        await asyncio.to_thread(send, sink)
        return await waiting

    assert len(asyncio.run(scenario())) == 1


def test_clear_forgets_received_messages(sink):
    send(sink)
    sink.clear()
    assert sink.messages == []
    send(sink, email(subject="second"))
    assert [m["Subject"] for m in sink.messages] == ["second"]


def test_failing_sink_refuses_mail_with_a_temporary_error_until_it_recovers(sink):
    sink.fail_with(code=451)

    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        send(sink)
    assert refused.value.smtp_code == 451
    assert sink.messages == []
    assert sink.rejected == 1

    sink.recover()
    send(sink)
    assert len(sink.messages) == 1


@pytest.mark.parametrize(
    ("at", "code", "error"),
    [
        ("RCPT", 451, smtplib.SMTPRecipientsRefused),
        ("DATA", 452, smtplib.SMTPDataError),
        ("RCPT", 550, smtplib.SMTPRecipientsRefused),
    ],
)
def test_failing_sink_can_refuse_at_rcpt_or_data_and_permanently(sink, at, code, error):
    sink.fail_with(code, at=at)

    with pytest.raises(error) as refused:
        send(sink)

    codes = [c for c, _ in refused.value.recipients.values()] if at == "RCPT" else [refused.value.smtp_code]
    assert codes == [code]
    assert sink.messages == []


def test_fail_with_rejects_a_code_that_is_not_a_failure(sink):
    with pytest.raises(ValueError, match="4xx or 5xx"):
        sink.fail_with(250)


def test_stopped_sink_refuses_connections_and_restarts_on_the_same_port(sink):
    send(sink)
    port = sink.port

    sink.stop()
    with pytest.raises(ConnectionRefusedError):
        send(sink)

    sink.start()
    send(sink)
    assert sink.port == port
    assert len(sink.messages) == 2


def test_sink_with_credentials_accepts_only_logged_in_clients():
    with SMTPSink(credentials=("baton", "p@ss word")) as sink:
        assert sink.url == f"smtp://baton:p%40ss%20word@127.0.0.1:{sink.port}"
        with pytest.raises(smtplib.SMTPSenderRefused):
            send(sink)
        with pytest.raises(smtplib.SMTPAuthenticationError):
            send(sink, user="baton", password="wrong")
        send(sink, user="baton", password="p@ss word")
        assert len(sink.messages) == 1

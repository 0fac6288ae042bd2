"""``baton-partner``: a partner's command line for Baton.

Configuration comes from options or the environment (``BATON_URL``, ``BATON_KEYID``,
``BATON_KEY_FILE``, ``BATON_ALG``, ``BATON_PARTNER``), so a cron job or a shell session sets it
once. Errors print Baton's problem title and detail to stderr and exit 1, never a traceback.
Answers are printed to stdout as JSON; lists meant for reading (cases, and claims on a terminal)
as tables, and on a terminal a scan upload's tally and ``whoami`` as a line. An upload's progress
bar goes to stderr, and only on a terminal, so output piped to another program stays clean.

Tests and programs embedding the CLI can route its requests through any httpx transport by
passing it as Click's context object: ``CliRunner().invoke(app, args, obj=transport)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table
from rich.text import Text

from ._auth import BatonSigner
from ._client import SCAN_CONTENT_TYPES, TYPE_B_CONTENT_TYPE, BatonClient
from ._exceptions import BatonError
from ._keys import generate_ed25519_keypair

app = typer.Typer(
    name="baton-partner",
    help=(
        "Post updates and bag scans to Baton, manage custody handoffs, attach evidence, deliver and answer claims, "
        "as a partner."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass(frozen=True)
class _Settings:
    url: str
    keyid: str | None
    key_file: Path | None
    alg: str | None
    partner: str | None
    transport: httpx.BaseTransport | None


@app.callback()
def configure(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(envvar="BATON_URL", help="Baton's base URL.")] = "http://127.0.0.1:8000",
    keyid: Annotated[
        str | None, typer.Option(envvar="BATON_KEYID", help="Key id registered with Baton, e.g. lh-2026-11.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option(envvar="BATON_KEY_FILE", help="Ed25519 private key (PEM) or HMAC secret (base64) file."),
    ] = None,
    alg: Annotated[
        str | None,
        typer.Option(envvar="BATON_ALG", help="ed25519 or hmac-sha256; detected from the key file when omitted."),
    ] = None,
    partner: Annotated[
        str | None,
        typer.Option(envvar="BATON_PARTNER", help="Your partner id, to show your role on cases (else asked of Baton)."),
    ] = None,
) -> None:
    """Talk to Baton as a partner, signing every request with your key."""
    transport = ctx.obj if isinstance(ctx.obj, httpx.BaseTransport) else None
    ctx.obj = _Settings(url=url, keyid=keyid, key_file=key_file, alg=alg, partner=partner, transport=transport)


def _open_client(settings: _Settings) -> BatonClient:
    """A signing client, or a usage error naming the setting that is missing or wrong."""
    if not settings.keyid:
        raise typer.BadParameter("a key id is needed to sign requests", param_hint="'--keyid' / BATON_KEYID")
    if settings.key_file is None:
        raise typer.BadParameter("a key is needed to sign requests", param_hint="'--key-file' / BATON_KEY_FILE")
    try:
        signer = BatonSigner.from_key_file(settings.keyid, settings.key_file, alg=settings.alg)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="'--key-file' / BATON_KEY_FILE") from exc
    return BatonClient(settings.url, signer, transport=settings.transport)


@contextmanager
def _reporting_errors() -> Iterator[None]:
    """Turn the client's errors into one line on stderr and exit status 1."""
    try:
        yield
    except BatonError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(code=1) from exc


def _parse_time(value: str) -> datetime:
    """RFC 3339 with an offset; a naive time would be read in the server's zone, not yours."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise typer.BadParameter(f"{value!r} is not a time like 2026-11-03T14:00:00+01:00") from exc
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{value!r} needs a UTC offset, e.g. Z or +01:00")
    return parsed


def _parse_amount(value: str) -> Decimal:
    """A decimal amount such as 30.00, kept exactly as written (never through a float)."""
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter(f"{value!r} is not an amount like 30.00") from None
    if not amount.is_finite():
        raise typer.BadParameter(f"{value!r} is not an amount like 30.00")
    return amount


def _echo_json(document: dict[str, Any]) -> None:
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))


def _time_option(help_text: str) -> Any:
    return typer.Option(parser=_parse_time, metavar="RFC3339", help=help_text)


def _file_option(help_text: str) -> Any:
    return typer.Option(exists=True, dir_okay=False, readable=True, metavar="FILE", help=help_text)


@contextmanager
def _upload_progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress bar with bytes sent and speed, on stderr when it is a terminal; yields the callback."""
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=None)

        def advance(sent: int, total: int) -> None:
            bar.update(task, completed=sent, total=total)

        yield advance


@app.command()
def keygen(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Where to write the private key (created with mode 0600).")],
    force: Annotated[bool, typer.Option(help="Replace an existing key file.")] = False,
) -> None:
    """Create an Ed25519 key pair: the private key stays with you, the public key goes to Baton."""
    private_pem, public_pem = generate_ed25519_keypair()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(out, flags, 0o600)
    except FileExistsError:
        typer.echo(f"error: {out} exists; pass --force to replace it", err=True)
        raise typer.Exit(code=1) from None
    with os.fdopen(fd, "wb") as key_file:
        key_file.write(private_pem)
    # os.open's mode applies only to a new file; a replaced one may have been readable by others.
    os.chmod(out, 0o600)
    typer.echo(public_pem.decode("ascii"), nl=False)
    keyid = ctx.obj.keyid or "<keyid>"
    typer.echo(
        f"Register this public key with Baton (baton partners keys add ... or POST /v1/partners/<id>/keys "
        f'with {{"keyid": "{keyid}", "alg": "ed25519", "public_key": ...}}), '
        f"then set BATON_KEYID={keyid} BATON_KEY_FILE={out}",
        err=True,
    )


@app.command("post-update")
def post_update(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference, e.g. BAG-7KQ3X9M.")],
    status: Annotated[str | None, typer.Option(help="New status code, e.g. located.")] = None,
    message: Annotated[str | None, typer.Option(help="Customer-facing message.")] = None,
    internal_note: Annotated[
        str | None, typer.Option(help="Note for the parties, never shown to the customer.")
    ] = None,
    location: Annotated[str | None, typer.Option(help="Where the item is, e.g. FRA.")] = None,
    eta: Annotated[datetime | None, _time_option("When the item is expected to arrive.")] = None,
    occurred_at: Annotated[datetime | None, _time_option("When it happened (default: when Baton receives it).")] = None,
    next_update_by: Annotated[datetime | None, _time_option("Your promise of the next update.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to retry safely; generated if omitted.")] = None,
) -> None:
    """Post a status update or note on a case and print the created event."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        event = baton.post_update(
            ref,
            status=status,
            message=message,
            internal_note=internal_note,
            location=location,
            eta=eta,
            occurred_at=occurred_at,
            next_update_by=next_update_by,
            idempotency_key=idempotency_key,
        )
    _echo_json(event)


@app.command("hand-off")
def hand_off(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    to: Annotated[str, typer.Option(help="Partner id receiving custody, e.g. fastcourier.")],
    note: Annotated[str | None, typer.Option(help="Note for the receiver.")] = None,
    accept_within: Annotated[str | None, typer.Option(help="ISO 8601 duration, e.g. PT2H.")] = None,
) -> None:
    """Pass custody of a case's item to another partner and print the handoff."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        handoff = baton.hand_off(ref, to=to, note=note, accept_within=accept_within)
    _echo_json(handoff)


@app.command("accept-handoff")
def accept_handoff(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    handoff_id: Annotated[str, typer.Argument(help="The handoff's id.")],
) -> None:
    """Accept custody handed to you and print the handoff."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        handoff = baton.accept_handoff(ref, handoff_id)
    _echo_json(handoff)


@app.command()
def attach(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The file to upload.")],
    kind: Annotated[str, typer.Option(help="photo, receipt, document or proof_of_delivery.")],
    note: Annotated[str | None, typer.Option(help="What the file shows.")] = None,
    visibility: Annotated[
        str | None, typer.Option(help="public, parties or internal (Baton's default when omitted).")
    ] = None,
) -> None:
    """Upload a file as evidence on a case and print the attachment."""
    with _reporting_errors(), _open_client(ctx.obj) as baton, _upload_progress(file.name) as progress:
        attachment = baton.attach(ref, file, kind=kind, note=note, visibility=visibility, progress=progress)
    _echo_json(attachment)


@app.command()
def delivery(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
) -> None:
    """Print a case's delivery request: its state, window and address."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        found = baton.delivery(ref)
    _echo_json(found)


@app.command()
def bundle(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference (a case you own).")],
    out: Annotated[Path, typer.Option(help="Where to write the bundle, byte for byte as Baton sent it; - for stdout.")],
) -> None:
    """Download a case's evidence bundle; check it offline with `baton verify --bundle FILE`."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        document = baton.bundle(ref)
    if str(out) == "-":
        typer.echo(document, nl=False)  # bytes: written as they came
        return
    try:
        out.write_bytes(document)
    except OSError as exc:
        typer.echo(f"error: cannot write {out}: {exc.strerror or exc}", err=True)
        raise typer.Exit(code=1) from exc
    typer.echo(f"wrote {out} ({len(document)} bytes)", err=True)


@app.command("accept-delivery")
def accept_delivery(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
) -> None:
    """Take on a case's delivery, as its courier, and print the delivery."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        accepted = baton.accept_delivery(ref)
    _echo_json(accepted)


@app.command()
def deliver(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    photo: Annotated[Path | None, _file_option("Photo of the item delivered.")] = None,
    signature: Annotated[Path | None, _file_option("Image of the recipient's signature.")] = None,
    pin: Annotated[str | None, typer.Option(help="The 4-digit PIN the recipient gave you.")] = None,
    tag: Annotated[str | None, typer.Option(help="The bag tag number, e.g. 0016123456.")] = None,
) -> None:
    """Record proof of delivery, as the courier, and print the delivery event."""
    if photo is None and signature is None and pin is None and tag is None:
        raise typer.BadParameter("give at least one of --photo, --signature, --pin, --tag")
    label = " + ".join(file.name for file in (photo, signature) if file is not None) or "proof of delivery"
    with _reporting_errors(), _open_client(ctx.obj) as baton, _upload_progress(label) as progress:
        proof = baton.deliver(ref, photo=photo, signature=signature, pin=pin, bag_tag=tag, progress=progress)
    _echo_json(proof)


def _own_party(case: dict[str, Any], partner: str | None) -> dict[str, Any]:
    """The caller's party on a case; empty when the caller is no partner (staff)."""
    parties: list[dict[str, Any]] = case.get("parties", [])
    return next((party for party in parties if party.get("partner") == partner), {})


@app.command()
def cases(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option(help="Only cases in this status.")] = None,
) -> None:
    """List the cases you are party to, with your role and watchdog state on each."""
    settings: _Settings = ctx.obj
    with _reporting_errors(), _open_client(settings) as baton:
        # A key id does not name its partner; Baton knows whose key it is.
        partner = settings.partner or baton.whoami().get("partner")
        found = list(baton.iter_cases(status=status))
    table = Table("ref", "status", "type", "role", "state")
    for case in found:
        mine = _own_party(case, partner)
        table.add_row(
            case["ref"], case.get("status", ""), case.get("type", ""), mine.get("role", ""), mine.get("state", "")
        )
    Console().print(table)


@app.command()
def whoami(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, even on a terminal.")] = False,
) -> None:
    """Print who Baton takes your key to be: a line on a terminal, JSON otherwise."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        me = baton.whoami()
    console = Console()
    if as_json or not console.is_terminal:
        _echo_json(me)
        return
    if me.get("kind") == "partner":
        line = f"{me.get('name')} (partner {me.get('partner')})"
    else:
        line = f"{me.get('name')} ({me.get('kind')}, role {me.get('role')})"
    console.print(Text(line))


scans_app = typer.Typer(name="scans", help="Send bag scans to Baton.", no_args_is_help=True)
app.add_typer(scans_app)


class _ScanFormat(str, Enum):
    """The forms Baton reads scans in."""

    csv = "csv"
    json = "json"
    typeb = "typeb"


_SCAN_FORMAT_TYPES = {
    _ScanFormat.csv: SCAN_CONTENT_TYPES[".csv"],
    _ScanFormat.json: SCAN_CONTENT_TYPES[".json"],
    _ScanFormat.typeb: TYPE_B_CONTENT_TYPE,
}


@scans_app.command("upload")
def upload_scans(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The scans to send.")],
    scan_format: Annotated[
        _ScanFormat | None,
        typer.Option("--type", help="csv, json or typeb (IATA BSM/BPM); from the extension when omitted."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, even on a terminal.")] = False,
) -> None:
    """Send a file of bag scans and print Baton's tally: a summary and the lines it refused."""
    content_type = None if scan_format is None else _SCAN_FORMAT_TYPES[scan_format]
    with _reporting_errors(), _open_client(ctx.obj) as baton, _upload_progress(file.name) as progress:
        tally = baton.upload_scans(file, content_type=content_type, progress=progress)
    console = Console()
    if as_json or not console.is_terminal:
        _echo_json(tally)
        return
    counts = ("accepted", "matched", "unmatched", "duplicates")
    console.print(Text(", ".join(f"{name} {tally.get(name, 0)}" for name in counts)))
    errors: list[dict[str, Any]] = tally.get("errors") or []
    if errors:
        table = Table("line", "detail")
        for error in errors:
            # Text, not markup: a refused line's detail may quote what the file had.
            table.add_row(Text(str(error.get("line", ""))), Text(str(error.get("detail", ""))))
        console.print(table)


class _Decision(str, Enum):
    """What a claim can be decided as."""

    approved = "approved"
    partly_approved = "partly_approved"
    rejected = "rejected"


def _totals(claim: dict[str, Any]) -> str:
    """A claim's totals, one currency per line, e.g. ``12.50 EUR``."""
    totals: dict[str, str] = claim.get("totals") or {}
    return "\n".join(f"{amount} {currency}" for currency, amount in totals.items())


@app.command()
def claims(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON, even on a terminal.")] = False,
) -> None:
    """List a case's compensation claims: a table on a terminal, JSON otherwise."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        found = baton.claims(ref)
    console = Console()
    if as_json or not console.is_terminal:
        _echo_json(found)
        return
    table = Table("id", "kind", "state", "totals", "answer due", "overdue")
    for claim in found.get("items", []):
        cells = (claim.get("id"), claim.get("kind"), claim.get("state"), _totals(claim), claim.get("answer_due"))
        overdue = Text("yes", style="bold red") if claim.get("overdue") else Text("no")
        # Text, not markup: what Baton sends is shown as it is.
        table.add_row(*(Text("" if cell is None else str(cell)) for cell in cells), overdue)
    console.print(table)


@app.command()
def decide(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    claim_id: Annotated[int, typer.Argument(help="The claim's id.")],
    decision: Annotated[_Decision, typer.Option(help="What is decided.")],
    reason: Annotated[str, typer.Option(help="The reason for the decision.")],
    amount: Annotated[
        Decimal | None,
        typer.Option(parser=_parse_amount, metavar="AMOUNT", help="Amount granted, e.g. 30.00 (unless rejected)."),
    ] = None,
    currency: Annotated[str | None, typer.Option(help="Currency of the amount, e.g. EUR.")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to retry safely; generated if omitted.")] = None,
) -> None:
    """Approve, partly approve or reject a claim and print the claim."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        claim = baton.decide(
            ref,
            claim_id,
            decision=decision.value,
            amount=amount,
            currency=currency,
            reason=reason,
            idempotency_key=idempotency_key,
        )
    _echo_json(claim)


@app.command()
def paid(
    ctx: typer.Context,
    ref: Annotated[str, typer.Argument(help="Case reference.")],
    claim_id: Annotated[int, typer.Argument(help="The claim's id.")],
    reference: Annotated[str, typer.Option(help="The payment's reference, e.g. a bank transfer id.")],
    idempotency_key: Annotated[str | None, typer.Option(help="Reuse to retry safely; generated if omitted.")] = None,
) -> None:
    """Record that a decided claim was paid and print the claim."""
    with _reporting_errors(), _open_client(ctx.obj) as baton:
        claim = baton.mark_paid(ref, claim_id, reference=reference, idempotency_key=idempotency_key)
    _echo_json(claim)


def main() -> None:
    """Entry point of the ``baton-partner`` console script."""
    app()

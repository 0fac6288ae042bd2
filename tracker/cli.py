"""``baton``: serve, run workers, migrate, seed the demo, manage partners and staff, verify cases."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from kernel.clock import SystemClock
from kernel.config import get_settings
from kernel.db import make_engine, make_sessionmaker
from kernel.errors import BatonError

app = typer.Typer(help="Baton: a multi-party incident tracker.", no_args_is_help=True, add_completion=False)
partners_app = typer.Typer(help="Register partners and manage their signing keys.", no_args_is_help=True)
keys_app = typer.Typer(help="A partner's signing keys.", no_args_is_help=True)
staff_app = typer.Typer(help="Staff bearer tokens.", no_args_is_help=True)
app.add_typer(partners_app, name="partners")
partners_app.add_typer(keys_app, name="keys")
app.add_typer(staff_app, name="staff")

console = Console()
err = Console(stderr=True)
T = TypeVar("T")


def _run(work: Callable[[AsyncSession], Awaitable[T]], *, commit: bool = True) -> T:
    """Run one unit of work in a transaction; BatonErrors become a clean message and exit 1."""

    async def main() -> T:
        settings = get_settings()
        engine = make_engine(settings)
        try:
            async with make_sessionmaker(engine, settings=settings)() as session:
                result = await work(session)
                if commit:
                    await session.commit()
                return result
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except BatonError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from None


def _now() -> dt.datetime:
    return SystemClock().now()


@app.command()
def migrate() -> None:
    """Bring the database schema to the latest migration and seed the built-in case types."""
    from kernel import logs
    from tracker.migrate import describe, seed_case_types, upgrade

    settings = get_settings()
    logs.configure(settings.log_level, log_format=settings.log_format)

    async def main() -> str:
        engine = make_engine(settings)
        try:
            revisions = await upgrade(engine)
            async with make_sessionmaker(engine, settings=settings)() as session:
                await seed_case_types(session)
                await session.commit()
            return describe(revisions)
        finally:
            await engine.dispose()

    console.print(asyncio.run(main()))


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: int = typer.Option(1, help="Web worker processes (PostgreSQL only for more than one)."),
) -> None:
    """Serve the API, status pages and console."""
    import uvicorn

    settings = get_settings()
    if workers > 1 and settings.is_sqlite:
        err.print("[red]error:[/red] several web workers need PostgreSQL (BATON_DATABASE_URL=postgresql+asyncpg://...)")
        raise typer.Exit(2)
    from kernel import logs

    logs.configure(settings.log_level, log_format=settings.log_format)
    uvicorn.run(
        "tracker.web.app:create_app", factory=True, host=host, port=port, workers=workers,
        log_level=settings.log_level.lower(), proxy_headers=True, server_header=False, access_log=False,
        log_config=None,
    )


@app.command()
def worker(
    once: bool = typer.Option(False, help="Run one round and exit."),
    interval: float = typer.Option(2.0, help="Seconds between rounds."),
) -> None:
    """Watchdog, dispatcher and housekeeping; run any number of them against PostgreSQL."""
    from kernel import logs
    from tracker.worker import run_worker

    settings = get_settings()
    logs.configure(settings.log_level, log_format=settings.log_format)
    asyncio.run(run_worker(settings=settings, clock=SystemClock(), once=once, interval=interval))


@app.command()
def demo(
    if_empty: bool = typer.Option(False, "--if-empty", help="Seed only when there are no cases yet."),
    base_url: str = typer.Option(None, help="Base URL for links (default BATON_PUBLIC_BASE_URL or 127.0.0.1:8000)."),
) -> None:
    """Seed the lost-bag story: two airlines, a ground handler, a courier, one partner going silent."""
    from tracker import demo as demo_module
    from tracker.models import Case

    settings = get_settings()
    base = base_url or settings.public_base_url or "http://127.0.0.1:8000"
    var_dir = Path(os.environ.get("BATON_VAR_DIR", "var"))
    token_file = var_dir / "demo-admin-token"

    async def work(session: AsyncSession) -> Any:
        if await session.scalar(select(func.count()).select_from(Case)):
            return None
        return await demo_module.seed(session=session, now=_now(), base_url=base, var_dir=var_dir)

    result = _run(work)
    if result is None:
        if not if_empty:
            err.print("[yellow]the database already has cases; the demo seeds only an empty database[/yellow]")
            raise typer.Exit(1)
    else:
        token_file.write_text(result.admin_token + "\n")
        token_file.chmod(0o600)
        (var_dir / "demo-case").write_text(json.dumps({
            "ref": result.ref, "status_url": result.status_url,
            "delivered": {"ref": result.extra_refs[0], "status_url": result.delivered_url},
        }) + "\n")
    _print_demo(base, var_dir, settings.admin_token)


def _print_demo(base: str, var_dir: Path, admin_token: str | None) -> None:
    token_file = var_dir / "demo-admin-token"
    case_file = var_dir / "demo-case"
    if not case_file.exists():
        return
    case = json.loads(case_file.read_text())
    token = admin_token or (token_file.read_text().strip() if token_file.exists() else "(see BATON_ADMIN_TOKEN)")
    delivered = case.get("delivered") or {}
    print(f"""
Baton demo
  Console           {base}/console/  (sign in with the admin token)
  API docs          {base}/docs
  Demo case         {case['ref']} (WorldTracer JFKUA12345)
  Customer's link   {case['status_url']}
  Delivered bag     {delivered.get('ref', '-')} (Ada's second bag: her 18:00-20:00 slot, a photo, her PIN)
                    {delivered.get('status_url', '')}
  Admin token       {token}
  Partner keys      {var_dir / 'demo-keys'}/<partner>.key  (keyid <partner>-demo)

  curl -H 'Authorization: Bearer {token}' {base}/v1/cases/{case['ref']}
  BATON_URL={base} BATON_KEYID=lh-demo BATON_KEY_FILE={var_dir / 'demo-keys'}/lh.key baton-partner cases
""")


@app.command("demo-info", hidden=True)
def demo_info() -> None:
    """Print the demo's URLs and admin token again."""
    settings = get_settings()
    _print_demo(settings.public_base_url or "http://127.0.0.1:8000", Path(os.environ.get("BATON_VAR_DIR", "var")),
                settings.admin_token)


@app.command()
def verify(
    ref: str | None = typer.Argument(None, help="A case reference: checked against the database."),
    bundle: Path | None = typer.Option(None, "--bundle", help="An evidence bundle file: checked with no database."),
) -> None:
    """Re-check a case's hash chain and every partner signature; name the first event that fails."""
    from tracker.verify import verify_case

    if bundle is not None:
        if ref is not None:
            raise typer.BadParameter("give a case reference or --bundle FILE, not both", param_hint="REF")
        _verify_bundle(bundle)
        return
    if ref is None:
        raise typer.BadParameter("give a case reference, or --bundle FILE to check an evidence bundle",
                                 param_hint="REF")
    result = _run(lambda s: verify_case(session=s, ref=ref), commit=False)
    if result.ok:
        links = (f"; {result.via_link} posted through one-tap links (chained, not key-signed)"
                 if result.via_link else "")
        console.print(f"[green]ok[/green] {result.ref}: {result.events} events, chain intact, "
                      f"{result.signed} partner signatures verified{links}")
        return
    where = f"event {result.failed_seq}" if result.failed_seq else "the case"
    err.print(f"[red]FAILED[/red] {result.ref}: {where}: {result.reason}")
    raise typer.Exit(1)


def _verify_bundle(path: Path) -> None:
    """``baton verify --bundle``: the same checks, fed from the file; no database is opened."""
    from rich.markup import escape

    from tracker.verify import verify_bundle

    try:
        data = json.loads(path.read_bytes())
    except OSError as exc:
        err.print(f"[red]error:[/red] cannot read {escape(str(path))}: {escape(exc.strerror or str(exc))}")
        raise typer.Exit(1) from None
    except (ValueError, RecursionError):
        err.print(f"[red]error:[/red] {escape(str(path))} is not a JSON file")
        raise typer.Exit(1) from None
    result = verify_bundle(data)
    if not result.ok:
        where = f"event {result.failed_seq}" if result.failed_seq else "the bundle"
        err.print(f"[red]FAILED[/red] {escape(result.ref)}: {where}: {escape(result.reason or '')}", soft_wrap=True)
        raise typer.Exit(1)
    console.print(f"[green]ok[/green] {escape(result.ref)}: {result.events} events, chain intact, "
                  f"{result.signed} partner signatures verified offline, "
                  f"{result.hmac_unchecked} HMAC-signed not checkable offline (shared-secret key), "
                  f"{result.via_link} posted through one-tap links", soft_wrap=True)
    # The head is only as good as the copy it came from: a shortened bundle with a matching head checks.
    console.print(f"head: event {result.events}, hash {result.last_hash} (compare it with one you trust)",
                  soft_wrap=True)


@app.command()
def erase(ref: str, yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Erase the customer's personal data from a case (GDPR); the timeline still verifies."""
    from kernel.storage import open_store
    from tracker.erasure import delete_erased_files, erase_customer, forget_old_pages

    if not yes:
        typer.confirm(f"Erase the customer's name, phone, email and messages from {ref}?", abort=True)
    done = _run(lambda s: erase_customer(session=s, ref=ref, actor="staff:cli", now=_now()))

    async def delete_files(session: AsyncSession) -> int:
        store = open_store(get_settings())
        try:
            return await delete_erased_files(session=session, store=store, ref=ref)
        finally:
            await store.close()

    done["files_deleted"] = _run(delete_files, commit=False)
    # Committed: now the old page images can leave SQLite's WAL file as well.
    if not _run(lambda s: forget_old_pages(engine=s.bind), commit=False) and get_settings().is_sqlite:
        err.print("[yellow]warning:[/yellow] the WAL checkpoint was busy; old pages may stay in the -wal file "
                  "until the next checkpoint (stop other Baton processes and run erase again).")
    console.print(f"erased from {ref}: {done}")


@staff_app.command("add")
def staff_add(
    name: str,
    role: str = typer.Option("agent", help="agent, supervisor or admin."),
) -> None:
    """Create a staff token. It is shown once; only its hash is stored."""
    from tracker.principals import ROLES, create_staff_token

    if role not in ROLES:
        err.print(f"[red]error:[/red] role must be one of {', '.join(ROLES)}")
        raise typer.Exit(2)
    token = _run(lambda s: create_staff_token(session=s, name=name, role=role, now=_now()))
    console.print(f"{role} token for {name} (shown once):")
    print(token)


@partners_app.command("add")
def partners_add(
    partner_id: str,
    name: str = typer.Option(..., help="Display name, e.g. Lufthansa."),
    kind: str = typer.Option("other", help="airline, ground_handler, courier, ..."),
    ops_email: str = typer.Option(None),
    ops_phone: str = typer.Option(None),
    webhook_url: str = typer.Option(None),
    cadence: str = typer.Option("PT6H", help="Default update cadence (ISO 8601)."),
    timezone: str = typer.Option("UTC"),
) -> None:
    """Register a partner."""
    from pydantic import ValidationError

    from partners.schemas import PartnerIn
    from partners.service import register_partner

    try:
        payload = PartnerIn(id=partner_id, name=name, kind=kind, ops_email=ops_email, ops_phone=ops_phone,
                            webhook_url=webhook_url, default_cadence=cadence, timezone=timezone)  # type: ignore[arg-type]
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    out = _run(lambda s: register_partner(session=s, payload=payload, now=_now()))
    console.print(f"registered {out.id}; webhook secret (shown once): {out.webhook_secret}")


@partners_app.command("list")
def partners_list() -> None:
    """List partners and their keys."""
    from partners.service import list_partners

    rows = _run(lambda s: list_partners(session=s), commit=False)
    table = Table("id", "name", "kind", "cadence", "keys")
    for p in rows:
        keys = ", ".join(f"{k.keyid} ({k.alg}{', revoked' if k.revoked_at else ''})" for k in p.keys)
        table.add_row(p.id, p.name, p.kind, str(p.default_cadence), keys)
    console.print(table)


@keys_app.command("add")
def keys_add(
    partner_id: str,
    keyid: str,
    alg: str = typer.Option("ed25519", help="ed25519 or hmac-sha256."),
    public_key_file: Path = typer.Option(None, help="PEM public key (ed25519)."),
) -> None:
    """Add a signing key; for hmac-sha256 the secret is printed once."""
    from pydantic import ValidationError

    from partners.schemas import KeyIn
    from partners.service import add_key

    pem = public_key_file.read_text() if public_key_file else None
    try:
        payload = KeyIn(keyid=keyid, alg=alg, public_key=pem)  # type: ignore[arg-type]
    except ValidationError as exc:
        err.print(f"[red]error:[/red] {exc.errors()[0]['msg']}")
        raise typer.Exit(2) from None
    out = _run(lambda s: add_key(session=s, partner_id=partner_id, payload=payload, now=_now()))
    console.print(f"added {out.keyid} ({out.alg}) to {partner_id}")
    if out.secret:
        console.print("HMAC secret (base64, shown once):")
        print(out.secret)


@keys_app.command("revoke")
def keys_revoke(partner_id: str, keyid: str) -> None:
    """Revoke a key: requests signed with it are refused from now on."""
    from partners.service import revoke_key

    _run(lambda s: revoke_key(session=s, partner_id=partner_id, keyid=keyid, now=_now()))
    console.print(f"revoked {keyid}")


@app.command("export")
def export_dataset(
    dataset: str = typer.Argument(..., help="cases, events, parties, notifications or scorecards."),
    fmt: str = typer.Option("csv", "--format", help="csv or ndjson."),
    since: str = typer.Option(None, "--from", help="RFC 3339 instant, included (e.g. 2026-11-01T00:00:00Z)."),
    until: str = typer.Option(None, "--to", help="RFC 3339 instant, excluded."),
    partner: str = typer.Option(None, "--partner", help="Only this partner's cases, parties, notifications, scorecard."),
    out: Path = typer.Option(None, "--out", help="Write to this file (with a progress bar); default: standard output."),
) -> None:
    """Export a dataset as CSV or NDJSON, as GET /v1/exports does: no personal data, no sandbox cases."""
    from rich.progress import Progress

    from tracker.complaints import count_export, export_stream, prepare_export

    async def main() -> int:
        settings = get_settings()
        engine = make_engine(settings)
        sessions = make_sessionmaker(engine, settings=settings)
        try:
            async with sessions() as session:
                export = await prepare_export(session=session, dataset=dataset, format=fmt, since=since,
                                              until=until, partner=partner, now=_now())
                total = await count_export(session=session, export=export) if out else 0
            if out is None:
                async for chunk in export_stream(sessions=sessions, export=export):
                    sys.stdout.buffer.write(chunk)
                sys.stdout.buffer.flush()
                return 0
            # Written beside the target and renamed at the end: a failed export leaves no half file behind.
            partial = out.with_name(out.name + ".part")
            written = 0
            try:
                with Progress(console=err) as progress, partial.open("wb") as file:
                    task = progress.add_task(f"{export.dataset} → {out.name}", total=total)

                    def advance(rows: int) -> None:
                        nonlocal written
                        written += rows
                        progress.advance(task, rows)

                    async for chunk in export_stream(sessions=sessions, export=export, progress=advance):
                        file.write(chunk)
                partial.replace(out)
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            return written
        finally:
            await engine.dispose()

    try:
        rows = asyncio.run(main())
    except BatonError as exc:
        err.print(f"[red]error:[/red] {exc.detail}")
        raise typer.Exit(1) from None
    if out is not None:
        err.print(f"wrote {rows} rows to {out}")


def main() -> None:
    app()


if __name__ == "__main__":
    sys.exit(main())

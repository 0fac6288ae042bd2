"""Evidence on an S3-compatible store: the S3-protocol server the tests start on loopback (moto).

The same flows as with the local folder (imported below, so pytest runs them again here with the
S3 settings), and what only shared storage gives: two ``baton serve`` processes on one bucket
serve each other's uploads.
"""

from __future__ import annotations

import hashlib
import io
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from kernel.config import Settings
from tests.support.processes import Admin, BatonServer
from tests.support.s3_server import S3Server
from tests.tracker.test_delivery import (  # noqa: F401  (collected again: the same flows on S3)
    test_the_proof_delivers_records_its_digests_and_shows_the_customer_the_photo,
)
from tests.tracker.test_evidence import (  # noqa: F401  (collected again: the same flows on S3)
    multipart,
    photo_with_gps,
    test_a_party_attaches_a_photo_signed_over_the_whole_body_and_its_gps_is_gone,
    test_erasure_deletes_the_customers_files_keeps_their_digests_and_the_chain_verifies,
    test_the_customer_adds_a_photo_from_the_status_page_and_the_parties_see_it,
)

ADMIN_TOKEN = "s3-admin-token-0123456789"


@pytest.fixture
def settings(settings: Settings, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in s3_server.environ().items():
        monkeypatch.setenv(name, value)
    prefix = f"t-{secrets.token_hex(4)}"  # a test of its own in the shared bucket
    return settings.model_copy(update={"storage_url": f"s3://{s3_server.bucket}/{prefix}",
                                       "s3_endpoint_url": s3_server.endpoint_url})


def test_the_app_really_stores_in_the_bucket(settings: Settings, s3_server: S3Server) -> None:
    from kernel.storage import S3BlobStore, open_store

    store = open_store(settings)
    assert isinstance(store, S3BlobStore) and store.bucket == s3_server.bucket


def _photo() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (320, 240), "teal").save(out, "PNG")
    return out.getvalue()


def test_two_servers_on_one_bucket_serve_each_others_uploads(pg_db: Any, s3_server: S3Server, tmp_path: Path) -> None:
    env = {
        "BATON_ADMIN_TOKEN": ADMIN_TOKEN,
        "BATON_STORAGE_URL": f"s3://{s3_server.bucket}/two-servers-{secrets.token_hex(4)}",
        "BATON_S3_ENDPOINT_URL": s3_server.endpoint_url,
        **s3_server.environ(),
    }
    servers = [BatonServer(pg_db.url, env=env, log_dir=tmp_path) for _ in range(2)]
    try:
        for server in servers:
            server.start(wait=False)
        for server in servers:
            server.ready()
        with Admin(servers[0].url, ADMIN_TOKEN) as admin:
            for spec in ({"id": "ua", "name": "United Airlines"}, {"id": "lh", "name": "Lufthansa"}):
                admin.post("/v1/partners", spec)
            case = admin.post("/v1/cases", {
                "type": "baggage", "title": "Two servers, one bucket", "owner": "ua",
                "customer": {"name": "Ada", "email": "ada@example.com", "timezone": "UTC"},
                "parties": [{"partner": "ua", "role": "owner"}, {"partner": "lh", "role": "carrier",
                                                                  "responsible": True}],
            })
        ref, token = case["ref"], case["status_url"].rsplit("/", 1)[1]
        staff = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        body, ctype = multipart({"file": ("a.png", _photo(), "image/png")}, {"kind": "photo"})
        with httpx.Client(timeout=30.0, trust_env=False) as http:
            added = http.post(f"{servers[0].url}/v1/cases/{ref}/attachments", content=body,
                              headers={**staff, "content-type": ctype})
            assert added.status_code == 201, f"{added.text}\n{servers[0].log_tail()}"
            answer = added.json()
            other = http.get(f"{servers[1].url}/v1/cases/{ref}/attachments/{answer['id']}", headers=staff)
            assert other.status_code == 200, servers[1].log_tail()
            assert hashlib.sha256(other.content).hexdigest() == answer["sha256"]
            thumb = http.get(f"{servers[1].url}/v1/cases/{ref}/attachments/{answer['id']}/thumbnail", headers=staff)
            assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/png"

            body, ctype = multipart({"file": ("b.jpg", photo_with_gps(), "image/jpeg")}, {"kind": "photo"})
            sent = http.post(f"{servers[1].url}/s/{token}/attachments", content=body, headers={"content-type": ctype})
            assert sent.status_code == 303, servers[1].log_tail()
            listed = http.get(f"{servers[0].url}/v1/cases/{ref}/attachments", headers=staff).json()["items"]
            mine = next(a for a in listed if a["actor"] == "customer")
            back = http.get(f"{servers[0].url}/s/{token}/files/{mine['id']}")
            assert back.status_code == 200 and hashlib.sha256(back.content).hexdigest() == mine["sha256"]
    finally:
        for server in servers:
            server.stop()

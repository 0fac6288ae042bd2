"""Real Baton processes for tests, one module per job:

- ``baton``: ``baton serve`` and ``baton worker`` in their own process groups (start, kill, restart);
- ``link``: a TCP hop in front of a server that delays answers and can drop its connections;
- ``load`` and ``load_client``: a signed load client in a process of its own, and that process;
- ``admin``: staff calls (partners, cases) to a running server;
- ``env``: free ports, a child's environment, ``poll`` and ``run_db``.

    with BatonServer(db_url, env={"BATON_ADMIN_TOKEN": token}) as server:  # waits for /readyz
        load = SignedLoad.start(urls=[server.url], partners=[...], count=100, workdir=tmp_path)
        server.kill()
        server.restart()
        assert load.wait() == 0
"""

from tests.support.processes.admin import Admin
from tests.support.processes.baton import BatonProcess, BatonServer, BatonWorker
from tests.support.processes.env import ProcessFailed, free_port, poll, run_db
from tests.support.processes.link import Link
from tests.support.processes.load import Acknowledged, LoadPartner, SignedLoad

__all__ = [
    "Acknowledged",
    "Admin",
    "BatonProcess",
    "BatonServer",
    "BatonWorker",
    "Link",
    "LoadPartner",
    "ProcessFailed",
    "SignedLoad",
    "free_port",
    "poll",
    "run_db",
]

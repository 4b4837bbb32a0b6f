"""gunicorn, started in-process: the master forks the workers; each worker builds its own app
(``mljobs.serve.app.make_app``), so its model loads after the fork, in the worker. SIGHUP is
gunicorn's graceful reload: new workers load the model afresh, old ones finish their requests."""
from __future__ import annotations

from gunicorn.app.base import BaseApplication

from mljobs.serve.model import log, safe_location


def gunicorn_options(host: str, port: int, workers: int, threads: int) -> dict:
    return {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        # gthread keeps connections alive (SageMaker reuses them); sync with one thread per worker.
        "worker_class": "gthread" if threads > 1 else "sync",
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 75,  # above the 60 s idle timeout of the load balancers in front of an endpoint
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "warning",
        "proc_name": "mljobs.serve",
        "preload_app": False,
        "on_reload": lambda arbiter: log("SIGHUP: reloading the workers (each loads the model afresh)"),
    }


class Server(BaseApplication):
    def __init__(self, model: str, options: dict, nthread: int = 1):
        import multiprocessing

        self.model, self.options, self.nthread = model, options, nthread
        # Set by the first worker that has its model, seen by all (made before the fork): from
        # then on a worker still loading makes /ping wait for its own load rather than answer
        # 503, so the health check never goes back from 200 to 503.
        self.served = multiprocessing.Event()
        super().__init__(prog="mljobs.serve")

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        from mljobs.serve.app import make_app  # in the worker, after the fork

        return make_app(self.model, nthread=self.nthread, served=self.served)


def serve(model: str, host: str, port: int, workers: int, threads: int) -> None:
    log(f"serving {safe_location(model)} on http://{host}:{port} with {workers} workers x {threads} threads "
        f"({'gthread' if threads > 1 else 'sync'})")
    # Imported once in the master, before the fork, so a worker (at start and after SIGHUP) loads
    # only the model. Safe: nothing here starts a thread until a worker predicts.
    import xgboost  # noqa: F401

    import mljobs.serve.app  # noqa: F401

    Server(model, gunicorn_options(host, port, workers, threads)).run()

"""The gunicorn master of ``ovsam label-studio serve``: imports gunicorn only, never torch.

Run as ``python -m ovsam_plugins.label_studio.gunicorn_main HOST:PORT WORKERS THREADS LOGLEVEL``
(``serve`` execs it with the settings already in the environment). The app module
(:mod:`.wsgi`, which loads the model) is imported by each worker after the fork.
"""
from __future__ import annotations

import sys
from typing import List


def main(argv: List[str]) -> None:
    import logging

    from gunicorn.app.base import BaseApplication

    bind, workers, threads, loglevel = argv
    level = getattr(logging, loglevel.upper(), logging.INFO)
    # the workers (forked from here) log like `serve` did before the exec
    logging.basicConfig(level=level, format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    logging.getLogger("ovsam.label_studio").setLevel(level)

    class _App(BaseApplication):
        def load_config(self):
            for k, v in {"bind": bind, "workers": int(workers), "threads": int(threads), "worker_class": "gthread",
                         "timeout": 0, "graceful_timeout": 30, "preload_app": False, "accesslog": "-",
                         "errorlog": "-", "loglevel": loglevel,
                         # gunicorn >= 25 opens a control socket under $HOME by default; not needed here
                         "control_socket_disable": True}.items():
                if k in self.cfg.settings:
                    self.cfg.set(k, v)

        def load(self):
            from .wsgi import app

            return app

    _App().run()


if __name__ == "__main__":
    main(sys.argv[1:])

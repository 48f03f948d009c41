"""nginx as the fleet's load balancer: its config, and the command that runs it.

nginx runs in the foreground (``daemon off``) with every path it writes (pid, error log, temp
files) under the rehearsal's directory, so it needs no root and leaves nothing behind. What the
gateway needs from a load balancer:

- ``proxy_buffering off``: each SSE chunk goes to the client as the gateway sends it;
- HTTP/1.1 with ``keepalive`` to the replicas: no TCP handshake per request on that hop;
- long read timeouts: a stream may stay quiet while a model thinks;
- no retry of a request a replica has started on (nginx retries only connection failures, and
  never a POST once sent): a retried completion would be paid twice.

Each answer carries ``x-gateway-replica`` (the replica's address), so a client can see which
replica served it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

REPLICA_HEADER = "x-gateway-replica"

_CONF = """\
# The rehearsal's load balancer: written by gateway_rehearsal, run as `nginx -c` this file.
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/tmp/body;
  proxy_temp_path {dir}/tmp/proxy;
  fastcgi_temp_path {dir}/tmp/fastcgi;
  uwsgi_temp_path {dir}/tmp/uwsgi;
  scgi_temp_path {dir}/tmp/scgi;
  keepalive_requests 1000000;
  keepalive_timeout 300s;
  upstream gateway {{
{servers}
    keepalive 256;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
  }}
  server {{
    listen {host}:{port};
    client_max_body_size {max_body};
    client_body_buffer_size 1m;
    location = /nginx-health {{
      return 200 "ok\\n";
    }}
    location / {{
      proxy_pass http://gateway;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 600s;
      proxy_send_timeout 600s;
      proxy_next_upstream error timeout;
      add_header {header} $upstream_addr always;
    }}
  }}
}}
"""


def nginx_conf(
    directory: Path,
    host: str,
    port: int,
    replicas: Sequence[str],
    max_body_bytes: int = 10 * 1024 * 1024,
) -> str:
    """The config of an nginx on ``host:port`` balancing over ``replicas`` (``host:port``
    each), writing its pid, error log and temp files under ``directory``."""
    servers = "\n".join(
        f"    server {address} max_fails=1 fail_timeout=2s;" for address in replicas
    )
    return _CONF.format(
        dir=directory,
        host=host,
        port=port,
        servers=servers,
        max_body=max_body_bytes,
        header=REPLICA_HEADER,
    )


def write_nginx_conf(directory: Path, conf: str) -> list[str]:
    """Write ``conf`` (and its temp directory) under ``directory``; the command that runs it."""
    (directory / "tmp").mkdir(parents=True, exist_ok=True)
    # nginx's worker runs as an unprivileged user when nginx starts as root: it must reach here
    directory.chmod(0o755)
    path = directory / "nginx.conf"
    path.write_text(conf)
    error_log = directory / "nginx-error.log"  # also where nginx reports before it reads conf
    return ["nginx", "-c", str(path), "-p", str(directory), "-e", str(error_log)]

#!/usr/bin/env bash
# Entrypoint of the unitfusion image: Airflow components by name, `init` for the one-off setup job,
# anything else (e.g. `unitfusion run ...`, `bash`) as given.
set -euo pipefail

init() {
  # Wait for the metadata database and migrate it; then store the secrets as Airflow connections (encrypted
  # with the Fernet key), so the long-running components never see them in their environment.
  airflow db check --retry 30 --retry-delay 2
  airflow db migrate
  local conns
  conns="$(mktemp --suffix=.json)"
  trap 'rm -f "$conns"' RETURN
  python - "$conns" <<'PY'
import json, os, sys

env = os.environ
connections = {}
if env.get("UNITFUSION_HMAC_KEY"):
    connections["unitfusion_hmac"] = {"conn_type": "generic", "password": env["UNITFUSION_HMAC_KEY"]}
if env.get("UNITFUSION_SMTP_CONN"):
    connections["unitfusion_smtp"] = json.loads(env["UNITFUSION_SMTP_CONN"])
if env.get("UNITFUSION_WEBHOOK_URL"):
    # the HTTP provider's standard form: the URL as host (a chat robot's shape: the extra "shape", docs/alerts.md)
    connections["unitfusion_webhook"] = {"conn_type": "http", "host": env["UNITFUSION_WEBHOOK_URL"]}
with open(sys.argv[1], "w") as f:
    json.dump(connections, f)
# The API server's users (simple auth manager): one admin whose password comes from the environment.
passwords = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
if passwords and env.get("AIRFLOW_ADMIN_PASSWORD"):
    os.makedirs(os.path.dirname(passwords), exist_ok=True)
    with open(passwords, "w") as f:
        json.dump({env.get("AIRFLOW_ADMIN_USER", "admin"): env["AIRFLOW_ADMIN_PASSWORD"]}, f)
print("connections:", " ".join(sorted(connections)) or "none")
PY
  airflow connections import --overwrite "$conns"
  mkdir -p "${UNITFUSION_OUT:-/data/store}"
  echo "unitfusion: Airflow database ready"
}

case "${1:-}" in
  init)
    init
    ;;
  scheduler | dag-processor | api-server | triggerer | standalone | db | dags | tasks | backfill | \
    connections | variables | pools | config | info | version | cheat-sheet | jobs | assets)
    exec airflow "$@"
    ;;
  *)
    exec "$@"
    ;;
esac

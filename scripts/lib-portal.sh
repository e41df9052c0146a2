# Sourced by the check scripts: starts the built portal on a free port with a fresh data dir, rate limits
# off and a first admin, and stops it when the script exits. Sets PORTAL_URL, PORTAL_EMAIL, PORTAL_PASSWORD.
# `start_localstripe` first makes the portal take payments through a localstripe server.

PORTAL_EMAIL=checks-admin@portal.test
PORTAL_PASSWORD=checks-admin-correct-horse
portal_dirs=()
portal_pids=()

stop_portals() {
  local pid
  for pid in "${portal_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${portal_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "${portal_dirs[@]}"
}
trap stop_portals EXIT

# Starts localstripe (from .venv) on a free port; the portals started after it use it for payments.
start_localstripe() {
  local port
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  localstripe --port "$port" --from-scratch >/dev/null 2>&1 &
  portal_pids+=("$!")
  for _ in $(seq 1 900); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      stripe_env=(STRIPE_SECRET_KEY=sk_test_checks STRIPE_PUBLISHABLE_KEY=pk_test_checks
        "STRIPE_API_BASE=http://127.0.0.1:$port/" "STRIPE_JS_URL=http://127.0.0.1:$port/js.stripe.com/v3/")
      return
    fi
    sleep 0.1
  done
  echo "localstripe did not start" >&2
  exit 1
}
stripe_env=()

start_portal() {
  local dir addr
  dir=$(mktemp -d)
  portal_dirs+=("$dir")
  # On PostgreSQL (PORTAL_DATABASE_URL set) each portal gets a schema of its own.
  export PORTAL_DATABASE_SCHEMA="s_$(basename "$dir" | tr -c 'A-Za-z0-9\n' '_')"
  env -u PORTAL_SMTP_URL -u STRIPE_SECRET_KEY PORTAL_ADMIN_EMAIL=$PORTAL_EMAIL PORTAL_ADMIN_PASSWORD=$PORTAL_PASSWORD \
    "${stripe_env[@]}" target/debug/portal serve --addr 127.0.0.1:0 --data-dir "$dir" --log-format json --rate-limit off \
    2>"$dir/portal.log" &
  portal_pids+=("$!")
  addr=""
  for _ in $(seq 1 600); do
    if grep -q '"portal listening"' "$dir/portal.log" 2>/dev/null; then
      addr=$(grep '"portal listening"' "$dir/portal.log" | grep -o '"addr":"[^"]*"' | head -n1 | cut -d'"' -f4)
      break
    fi
    kill -0 "${portal_pids[-1]}" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    echo "portal did not start:" >&2
    cat "$dir/portal.log" >&2
    exit 1
  fi
  PORTAL_URL="http://$addr"
  export PORTAL_URL PORTAL_EMAIL PORTAL_PASSWORD
}

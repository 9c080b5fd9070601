#!/bin/sh
# The PostgreSQL server programs (initdb, pg_ctl, postgres, psql) that the tests' throwaway
# servers run on; tests/postgres_server.py finds them (and says where it looked).
#
#   PYTHON=.venv/bin/python sh scripts/ensure-postgres.sh       # `make check` runs it
#
# Present: one quick look and nothing else (no network). Missing, as root where apt-get is
# (CI on a clean Debian): install Debian's postgresql package, but not the "main" cluster that
# Debian would create and start on port 5432 (the tests start their own servers, on free ports
# of 127.0.0.1). Missing, not root: say what to install, and fail.
set -eu
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"

find_programs() { "$PYTHON" -m tests.postgres_server >/dev/null; }  # why not, on stderr

if find_programs 2>/dev/null; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    find_programs || echo "ensure-postgres: installing it takes root and apt-get; install it by hand" >&2
    exit 1
fi

clusters() {  # "15/main 16/other ", as pg_lsclusters lists them
    if command -v pg_lsclusters >/dev/null 2>&1; then
        pg_lsclusters --no-header | awk '{ printf "%s/%s ", $1, $2 }'
    fi
}
before="$(clusters)"

# read by pg_createcluster while the package is configured (createcluster.conf includes the
# directory); removed afterwards, leaving the machine's configuration as it was
no_main=/etc/postgresql-common/createcluster.d/zz-worker-queue-no-main-cluster.conf
if [ ! -e "$no_main" ]; then
    mkdir -p "$(dirname "$no_main")"
    trap 'rm -f "$no_main"' EXIT
    echo 'create_main_cluster = false  # written by worker-queue scripts/ensure-postgres.sh' >"$no_main"
fi

echo "ensure-postgres: installing Debian's postgresql package for the tests" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends postgresql >/dev/null

# an older postgresql-common does not read createcluster.d: drop any cluster the install made
for cluster in $(clusters); do
    case " $before" in
        *" $cluster "*) ;;
        *)
            echo "ensure-postgres: dropping the cluster $cluster that installing postgresql made" >&2
            pg_dropcluster --stop "${cluster%/*}" "${cluster#*/}"
            ;;
    esac
done

find_programs
echo "ensure-postgres: PostgreSQL server programs in $("$PYTHON" -m tests.postgres_server)" >&2

# Shared by the scripts under tools/: where things are cached, and how to get them.
# Sourced, never run. Everything lands outside the repo, keyed by what built it.

VMKUBE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Caches, state and the passphrase hold binaries others must not swap and secrets
# others must not read: everything the tools create is private to this user.
umask 077
VMKUBE_CACHE=${VMKUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vmkube}
VMKUBE_DATA=${VMKUBE_DATA:-${XDG_DATA_HOME:-$HOME/.local/share}/vmkube}
VMKUBE_CONFIG=${VMKUBE_CONFIG:-${XDG_CONFIG_HOME:-$HOME/.config}/vmkube}
# Oldest CLI that understands the pinned Python SDK (requirements.txt).
VMKUBE_MIN_PULUMI=3.272.0

vmkube_log() { printf 'vmkube: %s\n' "$*" >&2; }
vmkube_die() { printf 'vmkube: error: %s\n' "$*" >&2; exit 1; }

vmkube_tool_version() {
  sed -n "s|^\t$2 \(v[^ ]*\).*|\1|p; s|^require $2 \(v[^ ]*\).*|\1|p" "$VMKUBE_ROOT/tools/go/$1/go.mod" | head -n1
}

# The source directory of a module a wrapper requires, downloaded first when the
# module cache lacks it (`go list -m -f {{.Dir}}` prints an empty line then).
vmkube_module_dir() {  # vmkube_module_dir <tool> <module>
  local json dir
  json=$(cd "$VMKUBE_ROOT/tools/go/$1" && go mod download -json "$2") \
    || vmkube_die "go mod download $2 (for $1) failed: $json"
  dir=$(python3 -c 'import json, sys; print(json.load(sys.stdin).get("Dir", ""))' <<<"$json")
  [ -n "$dir" ] && [ -d "$dir" ] || vmkube_die "go mod download $2 (for $1) gave no directory: $json"
  echo "$dir"
}


# True when `pulumi` on PATH is new enough to run this project.
vmkube_system_pulumi_ok() {
  local have
  have=$(command -v pulumi 2>/dev/null) || return 1
  case "$have" in "$VMKUBE_CACHE"/*) return 1 ;; esac
  have=$(pulumi version 2>/dev/null | sed 's/^v//') || return 1
  [ "$(printf '%s\n%s\n' "$VMKUBE_MIN_PULUMI" "$have" | sort -V | head -n1)" = "$VMKUBE_MIN_PULUMI" ]
}

vmkube_ensure_venv() {
  local venv=$VMKUBE_ROOT/.venv stamp
  stamp=$(cat "$VMKUBE_ROOT"/requirements*.txt | sha256sum | cut -c1-16)
  [ -f "$venv/.vmkube-$stamp" ] && return 0
  vmkube_log "installing Python requirements into .venv"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || vmkube_die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$VMKUBE_ROOT/requirements-test.txt" \
    || vmkube_die "pip install failed; see the lines above (libvirt-python builds against libvirt-dev and pkg-config: tools/host-setup installs them)"
  rm -f "$venv"/.vmkube-* && touch "$venv/.vmkube-$stamp"
}

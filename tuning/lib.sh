# shellcheck shell=bash
# Shared by tuning/audit and tuning/apply (sourced, not run): the host root, core lists, the
# hot cores from --cores or a maxx config.
#
# MAXX_TUNING_ROOT: every path either script reads or writes is prefixed with it (default: the
# real root). Tests point it at a fake /proc + /sys tree.

ROOT="${MAXX_TUNING_ROOT:-}"
ROOT="${ROOT%/}"

# True when the scripts look at (and would change) the real host.
real_root() { [ -z "$ROOT" ]; }

# Contents of $ROOT$1, or "?" when it cannot be read.
rd() {
  local v
  if [ -r "$ROOT$1" ] && v="$(cat "$ROOT$1" 2>/dev/null)"; then printf '%s' "$v"; else printf '?'; fi
}

# "0-3,8" -> "0 1 2 3 8" (sorted, unique). Tokens that are not numbers or ranges (isolcpus
# flags such as managed_irq, domain, nohz) are skipped. Empty in, empty out.
expand_list() {
  local IFS=, part out=()
  for part in $1; do
    part="${part//[[:space:]]/}"
    if [[ "$part" =~ ^([0-9]+)-([0-9]+)$ ]]; then
      local i
      for ((i = BASH_REMATCH[1]; i <= BASH_REMATCH[2]; i++)); do out+=("$i"); done
    elif [[ "$part" =~ ^[0-9]+$ ]]; then
      out+=("$((10#$part))")
    fi
  done
  [ "${#out[@]}" -eq 0 ] && return 0
  printf '%s\n' "${out[@]}" | sort -nu | tr '\n' ' ' | sed 's/ $//'
}

# "0 1 2 5" -> "0-2,5"
compress_list() {
  local c start="" prev="" res=""
  for c in $1; do
    if [ -z "$start" ]; then start=$c; prev=$c; continue; fi
    if [ "$c" -eq $((prev + 1)) ]; then prev=$c; continue; fi
    res+="$( [ "$start" = "$prev" ] && echo "$start" || echo "$start-$prev"),"
    start=$c; prev=$c
  done
  [ -n "$start" ] && res+="$( [ "$start" = "$prev" ] && echo "$start" || echo "$start-$prev")"
  printf '%s' "${res%,}"
}

# Is $1 in the space-separated list $2?
in_list() { [[ " $2 " == *" $1 "* ]]; }

# Items of list $1 that are not in list $2 / that are in list $2.
minus() { local c out=(); for c in $1; do in_list "$c" "$2" || out+=("$c"); done; echo "${out[*]}"; }
both() { local c out=(); for c in $1; do in_list "$c" "$2" && out+=("$c"); done; echo "${out[*]}"; }

# A hex CPU mask as the kernel prints it ("3", "00000003", "ff,ffffffff") -> "0 1".
mask_to_list() {
  local hex="${1//,/}" out=() i d bit cpu=0
  hex="${hex//[[:space:]]/}"
  [[ "$hex" =~ ^[0-9a-fA-F]*$ ]] || return 0
  for ((i = ${#hex} - 1; i >= 0; i--)); do
    d=$((16#${hex:i:1}))
    for bit in 0 1 2 3; do
      (((d >> bit) & 1)) && out+=("$((cpu + bit))")
    done
    cpu=$((cpu + 4))
  done
  [ "${#out[@]}" -eq 0 ] && return 0
  printf '%s\n' "${out[@]}" | sort -n | tr '\n' ' ' | sed 's/ $//'
}

# "0 1" -> a hex mask in the kernel's format, 32-bit groups joined by commas ("3"; with more
# than 32 CPUs "1,00000003"). $2 (optional): the width in groups to pad to.
list_to_mask() {
  local c max=0 groups i res="" g
  for c in $1; do [ "$c" -gt "$max" ] && max=$c; done
  groups=$((max / 32 + 1))
  [ -n "${2:-}" ] && [ "$2" -gt "$groups" ] && groups=$2
  for ((i = groups - 1; i >= 0; i--)); do
    g=0
    for c in $1; do [ $((c / 32)) -eq "$i" ] && g=$((g | (1 << (c % 32)))); done
    if [ "$i" -eq $((groups - 1)) ] && [ -z "${2:-}" ]; then res+="$(printf '%x' "$g")"; else res+="$(printf '%08x' "$g")"; fi
    [ "$i" -gt 0 ] && res+=","
  done
  printf '%s' "$res"
}

# The value of key=... on the kernel command line ($ROOT/proc/cmdline), empty if absent.
cmdline_value() {
  local w
  for w in $(rd /proc/cmdline); do
    [ "$w" = "--" ] && break
    case "$w" in "$1="*) printf '%s' "${w#*=}"; return 0 ;; esac
  done
}
cmdline_has() {
  local w
  for w in $(rd /proc/cmdline); do [ "$w" = "--" ] && break; [ "$w" = "$1" ] && return 0; done
  return 1
}

# The selected word of a sysfs choice file ("always [madvise] never" -> madvise); a file that
# holds a single word gives that word.
selected() {
  if [[ "$1" =~ \[([^]]+)\] ]]; then printf '%s' "${BASH_REMATCH[1]}"; else printf '%s' "${1//[[:space:]]/}"; fi
}

online_cpus() { expand_list "$(rd /sys/devices/system/cpu/online)"; }

# The core values of the `hot.cores` map in a maxx config (block or one-line flow style),
# one per line. Prints nothing when the config has no hot.cores (the caller applies maxx's
# default). Plain awk: no YAML library needed.
config_hot_cores() {
  awk '
    function emit(s,   n, a, i, kv, v) {
      n = split(s, a, ",")
      for (i = 1; i <= n; i++) {
        if (split(a[i], kv, ":") < 2) continue
        v = kv[2]; gsub(/[[:space:]"\047]/, "", v)
        if (v != "") print v
      }
    }
    /^[^[:space:]#]/ { in_hot = ($0 ~ /^hot:[[:space:]]*(#.*)?$/); in_cores = 0; next }
    !in_hot { next }
    in_cores {
      if ($0 ~ /^[[:space:]]*(#.*)?$/) next
      match($0, /^[[:space:]]*/)
      if (RLENGTH <= ind) in_cores = 0
      else { line = $0; sub(/#.*/, "", line); emit(line); next }
    }
    /^[[:space:]]+cores:/ {
      line = $0; sub(/#.*/, "", line); sub(/^[[:space:]]+cores:[[:space:]]*/, "", line)
      if (line ~ /^\{/) {
        if (line !~ /\}/) { print "ERROR: hot.cores: a flow map must be on one line"; exit }
        gsub(/[{}]/, "", line); emit(line)
      } else if (line ~ /^[[:space:]]*$/) {
        in_cores = 1; match($0, /^[[:space:]]*/); ind = RLENGTH
      } else { print "ERROR: hot.cores: expected a map, found: " line; exit }
    }
  ' "$1"
}

# Also from the config, for information: hot.layout and hot.wait.
config_hot_key() {
  awk -v key="$2" '
    /^[^[:space:]#]/ { in_hot = ($0 ~ /^hot:[[:space:]]*(#.*)?$/); next }
    in_hot && $0 ~ "^[[:space:]]+" key ":" { v = $0; sub(/#.*/, "", v); sub(/^[^:]*:[[:space:]]*/, "", v); gsub(/[[:space:]"\047]/, "", v); print v; exit }
  ' "$1"
}

# maxx's default hot.cores (config/agent_config.yaml: {md-binance: 0, alpha: 1, risk: 1, exec: 1}).
MAXX_DEFAULT_HOT_CORES="0,1"

# shellcheck disable=SC2034  # HOT and HOT_SOURCE are read by the scripts that source this file
# Parses --cores / --config into HOT (space-separated core list) and HOT_SOURCE. On a bad
# value prints the problem and exits 1.
resolve_hot_cores() {
  local cores_arg="$1" config_arg="$2" vals
  if [ -n "$cores_arg" ] && [ -n "$config_arg" ]; then
    echo "error: give --cores or --config, not both" >&2; exit 1
  fi
  if [ -n "$cores_arg" ]; then
    if ! [[ "$cores_arg" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]]; then
      echo "error: --cores: '$cores_arg' is not a core list (e.g. 2,3 or 2-5)" >&2; exit 1
    fi
    HOT="$(expand_list "$cores_arg")"
    HOT_SOURCE="--cores $cores_arg"
  elif [ -n "$config_arg" ]; then
    if [ ! -r "$config_arg" ]; then echo "error: --config: cannot read '$config_arg'" >&2; exit 1; fi
    vals="$(config_hot_cores "$config_arg")"
    if [[ "$vals" == *ERROR:* ]]; then echo "error: $config_arg: ${vals#*ERROR: }" >&2; exit 1; fi
    if [ -z "$vals" ]; then
      HOT="$(expand_list "$MAXX_DEFAULT_HOT_CORES")"
      HOT_SOURCE="$config_arg (no hot.cores: maxx's default map)"
    else
      local v
      for v in $vals; do
        [[ "$v" =~ ^[0-9]+$ ]] || { echo "error: $config_arg: hot.cores: '$v' is not a core index" >&2; exit 1; }
      done
      HOT="$(expand_list "$(echo "$vals" | tr '\n' ',')")"
      HOT_SOURCE="$config_arg hot.cores"
    fi
  else
    HOT=""
    HOT_SOURCE=""
  fi
}

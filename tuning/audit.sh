#!/usr/bin/env bash
# Read-only audit of a host's tuning for maxx's hot path. Changes nothing; prints one line per
# check as OK / WARN / INFO with what was found and what a latency-tuned box would have.
# Usage: tuning/audit.sh [hot-core-list]   e.g. tuning/audit.sh 2-5
set -u

hot="${1:-}"
ok()   { printf 'OK    %-26s %s\n' "$1" "$2"; }
warn() { printf 'WARN  %-26s %s\n' "$1" "$2"; }
info() { printf 'INFO  %-26s %s\n' "$1" "$2"; }
read_file() { [ -r "$1" ] && cat "$1" 2>/dev/null || echo "?"; }

cmdline="$(read_file /proc/cmdline)"
ncpu="$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?')"
info cpus "$ncpu online; allowed to this shell: $(grep Cpus_allowed_list /proc/self/status | awk '{print $2}')"
info cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"

for key in isolcpus nohz_full rcu_nocbs; do
  val="$(printf '%s\n' "$cmdline" | tr ' ' '\n' | grep "^$key=" | cut -d= -f2-)"
  if [ -n "$val" ]; then ok "$key" "$val"; else warn "$key" "not set: hot cores share the scheduler tick and RCU callbacks (see tuning/README.md)"; fi
done

gov_files=(/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor)
if [ -e "${gov_files[0]}" ]; then
  govs="$(cat "${gov_files[@]}" 2>/dev/null | sort | uniq -c | awk '{print $2"x"$1}' | tr '\n' ' ')"
  case "$govs" in
    performance*) ok cpufreq-governor "$govs" ;;
    *) warn cpufreq-governor "$govs(want performance)" ;;
  esac
else
  info cpufreq-governor "no cpufreq interface (VM or fixed-frequency host)"
fi

thp="$(read_file /sys/kernel/mm/transparent_hugepage/enabled)"
case "$thp" in
  *"[never]"*|*"[madvise]"*) ok transparent-hugepages "$thp" ;;
  *) warn transparent-hugepages "$thp (khugepaged compaction can stall a hot thread; want madvise or never)" ;;
esac

clk="$(read_file /sys/devices/system/clocksource/clocksource0/current_clocksource)"
case "$clk" in
  tsc) ok clocksource "$clk" ;;
  *) warn clocksource "$clk (clock_gettime is cheapest on tsc)" ;;
esac

smt="$(read_file /sys/devices/system/cpu/smt/active)"
case "$smt" in
  0) ok smt "off" ;;
  1) warn smt "on (a sibling hyperthread shares the hot core's caches and ports)" ;;
  *) info smt "unknown" ;;
esac

if pgrep -x irqbalance >/dev/null 2>&1; then
  warn irqbalance "running (it may move NIC interrupts onto hot cores)"
else
  ok irqbalance "not running"
fi

swp="$(read_file /proc/sys/vm/swappiness)"
if [ "$swp" != "?" ] && [ "$swp" -le 10 ]; then ok vm.swappiness "$swp"; else warn vm.swappiness "$swp (want <= 10)"; fi

rt="$(read_file /proc/sys/kernel/sched_rt_runtime_us)"
info sched_rt_runtime_us "$rt (-1 lets a SCHED_FIFO hot thread keep its core)"

numa="$(ls -d /sys/devices/system/node/node* 2>/dev/null | wc -l)"
info numa-nodes "$numa (keep hot threads, their memory and the NIC on one node)"

if [ -n "$hot" ]; then
  info hot-cores "$hot: interrupts currently landing there:"
  awk -v list="$hot" 'BEGIN{n=split(list,p,","); for(i=1;i<=n;i++){ if (split(p[i],r,"-")==2) for(c=r[1];c<=r[2];c++) want[c]=1; else want[p[i]]=1 } }
       NR==1{ for(i=1;i<=NF;i++) col[i]=substr($i,4); next }
       { s=0; for(i=2;i<=NF && (i-1) in col;i++) if ((col[i-1]) in want) s+=$i; if (s>0) printf "      %-10s %d\n", $1, s }' /proc/interrupts
fi
exit 0

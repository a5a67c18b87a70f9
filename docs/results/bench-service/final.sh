#!/bin/bash
cd /work/main
PG=postgresql://postgres@127.0.0.1:54329/r3mem_test
B=".venv/bin/python -m r3mem.cli bench-service"
BASE="env PYTHONPATH=/tmp/r3mem-base/src /work/main/.venv/bin/python -m r3mem.cli"
AFTER="/work/main/.venv/bin/python -m r3mem.cli"
run() { # tag args...
  local tag=$1; shift
  for side in base after; do
    if [ $side = base ]; then CMD=$BASE; else CMD=$AFTER; fi
    echo "$(date -u +%T) $side-$tag load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/bench/final.log
    $B "$@" --serve-command "$CMD" --json /tmp/bench/final-$side-$tag.json > /dev/null 2>>/tmp/bench/final.err
  done
}
run sqlite16 --clients 16 --seconds 60 --recall-share 0.8
run pg16 --clients 16 --seconds 60 --recall-share 0.8 --store $PG
run sqlite8 --clients 8 --seconds 60 --recall-share 0.8
run sqlite8h1 --clients 8 --hostile 1 --seconds 60 --recall-share 0.8
echo "$(date -u +%T) done" >> /tmp/bench/final.log

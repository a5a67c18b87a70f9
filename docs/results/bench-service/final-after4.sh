#!/bin/bash
cd /work/main
B=".venv/bin/python -m r3mem.cli bench-service"
AFTER="/work/main/.venv/bin/python -m r3mem.cli"
for tag in sqlite8 sqlite8h1; do
  extra=""; [ $tag = sqlite8h1 ] && extra="--hostile 1"
  echo "$(date -u +%T) after4-$tag load $(cut -d' ' -f1-3 /proc/loadavg)" >> /tmp/bench/final.log
  $B --clients 8 --seconds 60 --recall-share 0.8 $extra --serve-command "$AFTER" --json /tmp/bench/final-after4-$tag.json > /dev/null 2>>/tmp/bench/final.err
done
echo "$(date -u +%T) done4" >> /tmp/bench/final.log

#!/bin/sh
# summarize.sh FILE REGION: orders and total amount of one region, as JSON.
set -eu
awk -F, -v region="$2" '
  $2 == region { orders++; total += $3 }
  END { printf "{\"region\": \"%s\", \"orders\": %d, \"total\": %d}\n", region, orders, total }
' "$1"

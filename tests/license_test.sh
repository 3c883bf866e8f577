#!/usr/bin/env bash
# SPDX-License-Identifier: BSL-1.0
# Every source file of the tree names its license in its first three lines,
# and LICENSE holds the text that identifier names.
# Usage: tests/license_test.sh SOURCE_DIR
set -euo pipefail
cd "$1"
grep -q "^Boost Software License - Version 1.0" LICENSE || { echo "FAIL: LICENSE is not the BSL-1.0 text"; exit 1; }
missing=0 checked=0
while IFS= read -r -d '' f; do
  checked=$((checked + 1))
  if ! head -3 "$f" | grep -q "SPDX-License-Identifier: BSL-1.0"; then
    echo "FAIL: $f has no 'SPDX-License-Identifier: BSL-1.0' in its first lines"
    missing=$((missing + 1))
  fi
done < <(find . \( -path ./build -o -path './build-*' -o -path ./.git -o -path ./fuzz/corpus \) -prune -o -type f \
           \( -name '*.cpp' -o -name '*.hpp' -o -name '*.h' -o -name '*.sh' -o -name '*.py' -o -name '*.cmake' \
              -o -name '*.in' -o -name 'CMakeLists.txt' -o -name Makefile -o -name '*-completion' -o -name '*.1' \) -print0)
((checked > 100)) || { echo "FAIL: only $checked files checked"; exit 1; }
((missing == 0)) || exit 1
echo "license headers: $checked files"

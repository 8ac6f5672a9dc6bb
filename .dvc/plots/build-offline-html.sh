#!/usr/bin/env bash
# Rebuild offline.html (the page template of `dvc plots show`, with Vega inlined) and LICENSE.
#
#   .dvc/plots/build-offline-html.sh [VEGA_VERSION VEGA_LITE_VERSION VEGA_EMBED_VERSION]
#
# Needs npm and the npm registry (once, on a machine with access); the result is committed, so
# `dvc plots show` never needs the internet. Stay on vega 5 / vega-lite 5 / vega-embed 6: DVC's
# plot specs are Vega-Lite 5. The scripts are the packages' build/*.min.js (UMD), unchanged but
# for their last line, the sourceMappingURL comment (the maps are not shipped).
set -euo pipefail

VEGA=${1:-5.33.1}
VEGA_LITE=${2:-5.23.0}
VEGA_EMBED=${3:-6.29.0}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

cd "$tmp"
npm init -y >/dev/null
npm install --silent --no-audit --no-fund --ignore-scripts --omit=dev --save-exact \
    "vega@$VEGA" "vega-lite@$VEGA_LITE" "vega-embed@$VEGA_EMBED" >/dev/null
mods=$tmp/node_modules
for js in vega/build/vega.min.js vega-lite/build/vega-lite.min.js vega-embed/build/vega-embed.min.js; do
    # an inlined script must not end early or contain the template's placeholders
    if grep -qiE '</script|<!--|\{(scripts|plot_divs|refresh_tag)\}' "$mods/$js"; then
        echo "$js cannot be inlined as it is" >&2
        exit 1
    fi
done

{
    cat <<EOF
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
{refresh_tag}
<title>DVC plots</title>
<!--
  The page of \`dvc plots show\` (dvc_plots/index.html), for machines without internet: DVC's own
  page loads Vega from a CDN. Set in .dvc/config: [plots] html_template = plots/offline.html.
  Inlined below (build/*.min.js of the npm packages, less the sourceMappingURL line): vega $VEGA,
  vega-lite $VEGA_LITE, vega-embed $VEGA_EMBED; BSD-3-Clause, Copyright (c) 2015, University of
  Washington Interactive Data Lab. They bundle D3 modules, delaunator, topojson-client, semver (ISC), fast-json-patch,
  json-stringify-pretty-compact (MIT), tslib (0BSD) and robust-predicates (Unlicense): the licence
  texts are in LICENSE beside this file. Rebuild with build-offline-html.sh (same folder); never
  add DVC's scripts placeholder here: DVC fills it with its CDN script tags.
-->
<style>
  body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 1rem; }
  table { border-spacing: 15px; }
</style>
EOF
    for js in vega/build/vega.min.js vega-lite/build/vega-lite.min.js vega-embed/build/vega-embed.min.js; do
        printf '<script>\n'
        sed '/^\/\/# sourceMappingURL=/d' "$mods/$js"
        printf '\n</script>\n'
    done
    cat <<'EOF'
</head>
<body>
{plot_divs}
</body>
</html>
EOF
} >"$here/offline.html.tmp"
mv "$here/offline.html.tmp" "$here/offline.html"

# the licences of what the three bundles contain (CLI- and Node-only dependencies left out)
bundled='^(vega(-.*)?|d3-.*|delaunator|internmap|robust-predicates|topojson-client|fast-json-patch|json-stringify-pretty-compact|semver|tslib)$'
{
    cat <<EOF
Licences of the JavaScript inlined in offline.html (built by build-offline-html.sh):
vega $VEGA, vega-lite $VEGA_LITE and vega-embed $VEGA_EMBED from npm, build/*.min.js, and the
packages those bundles contain. The Vega packages are BSD-3-Clause:

EOF
    cat "$mods/vega-lite/LICENSE"
    for dir in $(npm ls --all --parseable --omit=dev 2>/dev/null | tail -n +2 | sort -u); do
        name=$(node -p "require('$dir/package.json').name")
        [[ $name =~ $bundled ]] || continue
        version=$(node -p "require('$dir/package.json').version")
        license=$(node -p "require('$dir/package.json').license")
        printf '\n==== %s %s (%s)\n' "$name" "$version" "$license"
        file=$(find "$dir" -maxdepth 1 -iname 'licen[cs]e*' | head -n 1)
        if [[ -n $file ]]; then
            cat "$file"
        else
            echo "(no licence file in the package: $license, University of Washington Interactive Data Lab, as above)"
        fi
    done
} >"$here/LICENSE"
echo "wrote $here/offline.html ($(wc -c <"$here/offline.html") bytes) and $here/LICENSE"

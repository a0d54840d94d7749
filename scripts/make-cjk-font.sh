#!/usr/bin/env bash
# Regenerates fonts/PagecastSansCJK-Regular.otf and fonts/LICENSE-OFL.txt from Debian's
# fonts-noto-cjk package. For maintainers only: CI uses the committed font and never runs this.
#
# Needs: a Debian (or derivative) system with apt sources configured, dpkg-deb, python3 with the
# venv module, and access to the Python package index (fontTools is installed into a throwaway
# virtualenv). Nothing is installed system-wide; the .deb is only downloaded and unpacked.
#
# Environment:
#   NOTO_CJK_VERSION   fonts-noto-cjk version to download (default: the one the committed font was
#                      built from; set to "" to take whatever apt offers).
#   FONTTOOLS_VERSION  fontTools version to install (default: the one the committed font was built
#                      with).
#   PAGECAST_FONT_PYTHON  use this Python interpreter (which must already have fontTools) instead of
#                      creating a virtualenv.
#   KEEP_WORKDIR=1     keep the temporary directory (prints its path).
set -euo pipefail

NOTO_CJK_VERSION="${NOTO_CJK_VERSION-1:20220127+repack1-1}"
FONTTOOLS_VERSION="${FONTTOOLS_VERSION:-4.68.0}"

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out_font="$repo/fonts/PagecastSansCJK-Regular.otf"
out_license="$repo/fonts/LICENSE-OFL.txt"

work="$(mktemp -d)"
if [ "${KEEP_WORKDIR:-0}" = 1 ]; then
  echo "make-cjk-font: working in $work"
else
  trap 'rm -rf "$work"' EXIT
fi

echo "make-cjk-font: downloading fonts-noto-cjk ${NOTO_CJK_VERSION:-(candidate)}"
pkg="fonts-noto-cjk"
[ -n "$NOTO_CJK_VERSION" ] && pkg="fonts-noto-cjk=$NOTO_CJK_VERSION"
# apt-get download writes into the current directory; as root it warns that the download is not
# sandboxed (the _apt user cannot write to a mktemp directory). That warning is harmless.
(cd "$work" && apt-get download "$pkg")
deb="$(ls "$work"/fonts-noto-cjk_*.deb)"
version="$(dpkg-deb -f "$deb" Version)"
dpkg-deb -x "$deb" "$work/x"

ttc="$work/x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc"
copyright="$work/x/usr/share/doc/fonts-noto-cjk/copyright"
[ -f "$ttc" ] || { echo "make-cjk-font: $ttc not found in $deb" >&2; exit 1; }
[ -f "$copyright" ] || { echo "make-cjk-font: $copyright not found in $deb" >&2; exit 1; }

if [ -n "${PAGECAST_FONT_PYTHON:-}" ]; then
  py="$PAGECAST_FONT_PYTHON"
else
  echo "make-cjk-font: installing fonttools==$FONTTOOLS_VERSION into a temporary virtualenv"
  python3 -m venv "$work/venv"
  "$work/venv/bin/python" -m pip install -q --disable-pip-version-check "fonttools==$FONTTOOLS_VERSION"
  py="$work/venv/bin/python"
fi

mkdir -p "$repo/fonts"
"$py" "$repo/scripts/make_cjk_font.py" "$ttc" "$out_font" \
  --debian-copyright "$copyright" --license-out "$out_license" --package-version "$version"

echo "make-cjk-font: wrote $out_font ($(stat -c %s "$out_font") bytes) and $out_license"
if command -v sha256sum >/dev/null 2>&1; then
  sha256sum "$out_font"
fi

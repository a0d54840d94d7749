#!/usr/bin/env python3
r"""Build fonts/PagecastSansCJK-Regular.otf, pagecast's bundled CJK test font.

Input: NotoSansCJK-Regular.ttc as shipped by Debian's fonts-noto-cjk package.
Output: a subset of the "Noto Sans CJK SC" face of that collection, renamed to
"Pagecast Sans CJK" so that a font lookup by that family name can only be
satisfied by the bundled file, never by a system font.

Usage:
  make_cjk_font.py SOURCE.ttc OUTPUT.otf \
      [--debian-copyright COPYRIGHT --license-out LICENSE-OFL.txt \
       --package-version VERSION] [--list-chars FILE]

Needs fontTools (pip install fonttools). See fonts/README.md for the coverage.
"""

import argparse
import sys

from fontTools import subset
from fontTools.ttLib import TTCollection

SOURCE_FACE = "Noto Sans CJK SC"
FAMILY = "Pagecast Sans CJK"
STYLE = "Regular"
PS_NAME = "PagecastSansCJK-Regular"

# Characters used by the test fixtures (tests/fixtures/cjk.html). Some of them
# (the traditional forms 網 and 頁) are not in GB2312, so they are listed here
# explicitly; the build fails if any of them is missing from the result.
FIXTURE_CHARS = "永あ录制網頁ウェブ녹화pagecast "

# Whole Unicode ranges, inclusive.
RANGES = [
    (0x0020, 0x007E),  # Basic Latin (printable)
    (0x00A0, 0x00FF),  # Latin-1 Supplement
    (0x2000, 0x206F),  # General Punctuation
    (0x3000, 0x303F),  # CJK Symbols and Punctuation
    (0x3040, 0x309F),  # Hiragana
    (0x30A0, 0x30FF),  # Katakana
    (0xFF00, 0xFFEF),  # Halfwidth and Fullwidth Forms
]


def double_byte(codec, rows, cells=range(0xA1, 0xFF)):
    """Every character of an EUC-style double-byte codec in the given lead-byte rows."""
    out = []
    for lead in rows:
        for trail in cells:
            try:
                out.append(bytes([lead, trail]).decode(codec))
            except UnicodeDecodeError:
                pass  # unassigned code point in this row
    return out


def wanted_chars():
    chars = {}

    def add(label, seq):
        chars[label] = [ord(c) if isinstance(c, str) else c for c in seq]

    add("ranges", [cp for lo, hi in RANGES for cp in range(lo, hi + 1)])
    # GB 2312 level 1 hanzi: rows 16-55 (EUC lead bytes 0xB0-0xD7), 3755 chars.
    add("gb2312-level1", double_byte("gb2312", range(0xB0, 0xD8)))
    # JIS X 0208 level 1 kanji: rows 16-47 (EUC lead bytes 0xB0-0xCF), 2965 chars,
    # the everyday Japanese kanji; most overlap with the GB 2312 set above.
    add("jisx0208-level1", double_byte("euc_jp", range(0xB0, 0xD0)))
    # KS X 1001 Hangul: compatibility jamo (row 4) and the 2350 precomposed
    # syllables (rows 16-40, EUC lead bytes 0xB0-0xC8).
    add("ksx1001-jamo", double_byte("euc_kr", [0xA4]))
    add("ksx1001-syllables", double_byte("euc_kr", range(0xB0, 0xC9)))
    add("fixtures", FIXTURE_CHARS)
    return chars


def find_face(path, family):
    coll = TTCollection(path, lazy=True)
    for i, face in enumerate(coll.fonts):
        if face["name"].getDebugName(1) == family:
            return i
    sys.exit(f"make_cjk_font: no face named {family!r} in {path}")


def rename(font, version_note):
    name = font["name"]
    for rec in name.names:
        if rec.nameID in (1, 16):
            rec.string = FAMILY
        elif rec.nameID == 4:
            rec.string = FAMILY
        elif rec.nameID == 6:
            rec.string = PS_NAME
        elif rec.nameID == 3:
            old = rec.toUnicode().split(";")
            rec.string = ";".join([old[0], "PAGECAST", PS_NAME])
        elif rec.nameID == 5:
            rec.string = rec.toUnicode() + version_note
        elif rec.nameID == 17:
            rec.string = STYLE

    # The CFF table carries its own copy of the names (shared by every face of
    # the source collection, so it says "JP"); rename it too.
    cff = font["CFF "].cff
    old_ps = cff.fontNames[0]
    top = cff[old_ps]
    cff.fontNames[0] = PS_NAME
    top.FamilyName = FAMILY
    top.FullName = f"{FAMILY} {STYLE}"
    if hasattr(top, "FDArray"):
        for fd in top.FDArray:
            fd_name = getattr(fd, "FontName", None)
            if fd_name and fd_name.startswith(old_ps):
                fd.FontName = PS_NAME + fd_name[len(old_ps):]


def debian_license_text(copyright_path, license_name="SIL-1.1"):
    """The text of a stand-alone "License:" paragraph of a machine-readable
    debian/copyright file, unfolded (one leading space removed from each line,
    lines consisting of " ." turned back into blank lines)."""
    with open(copyright_path, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    for i, line in enumerate(lines):
        # The stand-alone paragraph starts a stanza (blank line before it) and
        # is followed by continuation lines; "License:" fields inside a Files:
        # stanza only name the licence.
        if line.strip() != f"License: {license_name}" or (i > 0 and lines[i - 1].strip()):
            continue
        body = []
        for cont in lines[i + 1:]:
            if not cont.startswith((" ", "\t")):
                break
            text = cont[1:]
            body.append("" if text.strip() == "." else text)
        if body:
            return "\n".join(body).rstrip() + "\n"
    sys.exit(f"make_cjk_font: no stand-alone 'License: {license_name}' paragraph in {copyright_path}")


def debian_copyright_lines(copyright_path):
    """The Copyright: field of the "Files: *" stanza (the upstream files)."""
    with open(copyright_path, encoding="utf-8") as fh:
        stanzas = fh.read().split("\n\n")
    for stanza in stanzas:
        lines = stanza.splitlines()
        if lines and lines[0].strip() == "Files: *":
            out, inside = [], False
            for line in lines[1:]:
                if line.startswith("Copyright:"):
                    inside = True
                    out.append(line[len("Copyright:"):].strip())
                elif inside and line.startswith((" ", "\t")):
                    out.append(line.strip())
                else:
                    inside = False
            return out
    return []


def write_license(path, source_font, copyright_path, package_version):
    name = source_font["name"]
    notices = []
    ps_name = source_font["CFF "].cff.fontNames[0]
    for notice in (name.getDebugName(0), getattr(source_font["CFF "].cff[ps_name], "Notice", None)):
        if notice and notice not in notices:
            notices.append(notice)
    version = f" {package_version}" if package_version else ""
    header = [
        f"{FAMILY} ({PS_NAME}.otf) is a Modified Version, in the sense of the",
        f"licence below, of the \"{SOURCE_FACE}\" face of NotoSansCJK-Regular.ttc as",
        f"shipped in the Debian package fonts-noto-cjk{version}: a subset of its",
        "characters, with the font names changed.",
        "",
        "Copyright notices of the original font (name table and CFF Notice):",
        *(f"  {n}" for n in notices),
        "",
        "Copyright statement for the upstream files in the package's debian/copyright:",
        *(f"  {c}" for c in debian_copyright_lines(copyright_path)),
        "",
        "The font is licensed under the SIL Open Font License, Version 1.1, whose",
        "text, as shipped in that package, follows.",
        "",
        "",
    ]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(header))
        fh.write(debian_license_text(copyright_path))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("source", help="NotoSansCJK-Regular.ttc")
    ap.add_argument("output", help="output .otf path")
    ap.add_argument("--list-chars", help="also write the characters of the result to this file")
    ap.add_argument("--debian-copyright", help="usr/share/doc/fonts-noto-cjk/copyright from the .deb")
    ap.add_argument("--license-out", help="where to write the licence file (needs --debian-copyright)")
    ap.add_argument("--package-version", help="version of the fonts-noto-cjk package, for the licence file")
    args = ap.parse_args()
    if args.license_out and not args.debian_copyright:
        ap.error("--license-out needs --debian-copyright")

    groups = wanted_chars()
    unicodes = sorted({cp for seq in groups.values() for cp in seq})
    for label, seq in groups.items():
        print(f"make_cjk_font: {label}: {len(set(seq))} code points", file=sys.stderr)

    options = subset.Options()
    options.font_number = find_face(args.source, SOURCE_FACE)
    # Keep every name record (copyright, licence, URLs) in every language; the
    # family-related ones are renamed below.
    options.name_IDs = ["*"]
    options.name_languages = ["*"]
    # Keep a visible .notdef box: missing characters should render as tofu,
    # not as blank space.
    options.notdef_outline = True
    # Keep pyftsubset's default layout features, including 'locl' (so text
    # tagged lang="ja"/"ko"/"zh-Hant" gets the regional glyph forms, as with
    # the original font) and 'vert' (vertical writing), and keep the CFF hints.
    # Dropping 'locl' and hints would halve the size (~1.5 MB instead of ~3 MB).
    options.hinting = True
    # Keep the CFF subroutines: desubroutinizing only helps when the file is
    # later compressed (WOFF2), and makes the plain .otf bigger.
    options.desubroutinize = False

    font = subset.load_font(args.source, options, lazy=False)
    subsetter = subset.Subsetter(options=options)
    subsetter.populate(unicodes=unicodes)
    subsetter.subset(font)

    rename(font, f"; {FAMILY} subset of {SOURCE_FACE}")

    cmap = font.getBestCmap()
    missing = [c for c in FIXTURE_CHARS if ord(c) not in cmap]
    if missing:
        sys.exit(f"make_cjk_font: fixture characters missing from the subset: {missing!r}")
    not_in_source = [cp for cp in unicodes if cp not in cmap]
    print(
        f"make_cjk_font: requested {len(unicodes)} code points, mapped {len(cmap)}, "
        f"{len(not_in_source)} not in the source face, {len(font.getGlyphOrder())} glyphs",
        file=sys.stderr,
    )

    subset.save_font(font, args.output, options)
    if args.license_out:
        source = subset.load_font(args.source, options)
        write_license(args.license_out, source, args.debian_copyright, args.package_version)
    if args.list_chars:
        with open(args.list_chars, "w", encoding="utf-8") as fh:
            fh.write("".join(chr(cp) for cp in sorted(cmap)) + "\n")


if __name__ == "__main__":
    main()

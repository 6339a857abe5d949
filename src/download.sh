#!/usr/bin/env bash
# Fetch the livedoor news corpus (ldcc-20140209) into data/ and extract it to data/text/.
#
#   bash src/download.sh                     # from any working directory
#   LIVEDOOR_URL=file:///mirror/ldcc-20140209.tar.gz bash src/download.sh
#   bash src/download.sh --help              # this text; it takes no other argument
#
# Environment:
#   LIVEDOOR_URL                where to fetch the archive (https://, http:// or file://)
#   LIVEDOOR_EXPECTED_ARTICLES  article count the extracted corpus must have, a positive integer
#                               (7367; tests use a smaller corpus)
#
# Every step writes to a temporary name, renamed when complete: a failed run never leaves a data/ that a later
# run (or prepare.py) would take for complete. Runs started together (two sweeps on a fresh clone) take turns
# on data/.download.lock: the second waits for the first, then finds the corpus there.
set -euo pipefail
fail() { echo "download.sh: error: $*" >&2; exit 1; }
usage_error() { echo "download.sh: error: $* (see bash src/download.sh --help)" >&2; exit 2; }  # before any work
# --help prints the comment above, without its '#'; any other argument is an error (--help once downloaded)
for arg in "$@"; do
    [[ "$arg" == -h || "$arg" == --help ]] || usage_error "unknown argument '$arg'; settings are environment variables"
done
(($# == 0)) || { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; exit 0; }
URL="${LIVEDOOR_URL:-https://www.rondhuit.com/download/ldcc-20140209.tar.gz}"
# Checked first: a count that is not a number once made the error below tell the user to delete a good corpus
EXPECTED="${LIVEDOOR_EXPECTED_ARTICLES-7367}"
[[ "$EXPECTED" =~ ^0*[1-9][0-9]{0,8}$ ]] \
    || usage_error "LIVEDOOR_EXPECTED_ARTICLES is '$EXPECTED'; it is a positive integer, the article count"
EXPECTED=$((10#$EXPECTED))  # 07367 is 7367, as the count it is compared with is written
CATEGORIES=(dokujo-tsushin it-life-hack kaden-channel livedoor-homme movie-enter peachy smax sports-watch topic-news)
DATA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/data"
ARCHIVE="$DATA_DIR/ldcc-20140209.tar.gz" TEXT_DIR="$DATA_DIR/text"
LICENCE="The livedoor news corpus is (c) RONDHUIT Co., Ltd., licensed under CC BY-ND 2.1 JP
(https://creativecommons.org/licenses/by-nd/2.1/jp/); see https://www.rondhuit.com/download.html#ldcc
Do not redistribute the corpus or data derived from it."
check_count() {  # the articles in $1 (text/<category>/*.txt but LICENSE.txt), which $2 holds, as expected
    found="$(find "$1" -mindepth 2 -maxdepth 2 -name '*.txt' ! -name 'LICENSE.txt' | wc -l | tr -d ' ')"
    ((found == EXPECTED)) || fail "$2 holds $found articles, expected $EXPECTED; delete it and run this script again"
}
fetch() {  # URL to FILE; file:// is copied directly because wget cannot read it
    if [[ "$1" == file://* ]]; then cp -- "${1#file://}" "$2"
    elif command -v curl >/dev/null 2>&1; then curl -fsSL --retry 3 --connect-timeout 20 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then wget --quiet --tries=3 --timeout=20 -O "$2" "$1"
    else fail "neither curl nor wget is installed; install one of them"; fi
}
verify_archive() {  # a readable gzip tar holding text/<category>/ for all nine categories
    local listing category
    listing="$(tar -tzf "$1" 2>/dev/null)" || return 1
    for category in "${CATEGORIES[@]}"; do grep -q "^\(\./\)\?text/$category/" <<<"$listing" || return 1; done
}

mkdir -p "$DATA_DIR"
# A lock held until the script ends (even by kill -9), over the check below too: two runs that both found no
# data/text both extracted it, as data/text/text. Holding it, a partial download or extraction is a killed run's.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DATA_DIR/.download.lock"  # never deleted: other runs may have it open
    flock 9
    rm -rf -- "$ARCHIVE".part.* "$DATA_DIR"/.extract.*
else
    echo "download.sh: warning: flock (util-linux) not found: do not start two downloads at once" >&2
fi
if [[ -d "$TEXT_DIR" ]]; then
    check_count "$TEXT_DIR" "$TEXT_DIR"
    printf '%s\n' "Corpus already in $TEXT_DIR ($found articles): nothing to do." "$LICENCE"
    exit 0
fi
part="" staging=""
trap 'rm -rf -- ${part:+"$part"} ${staging:+"$staging"}' EXIT  # what a failed run was writing
if [[ ! -f "$ARCHIVE" ]]; then
    echo "Downloading $URL"
    part="$(mktemp "$ARCHIVE.part.XXXXXX")"
    fetch "$URL" "$part" || fail "could not download $URL; check the network or set LIVEDOOR_URL to a mirror"
    verify_archive "$part" || fail "$URL is not the livedoor corpus (not a readable .tar.gz with text/<9 categories>/)"
    # mktemp made it 0600; the archive gets the mode of any new file, 0666 less the umask, as curl -o gives
    chmod "$(printf '%o' $((0666 & ~8#$(umask))))" "$part"
    mv -- "$part" "$ARCHIVE"
elif ! verify_archive "$ARCHIVE"; then
    rm -f -- "$ARCHIVE"
    fail "$ARCHIVE was corrupt and has been removed; run this script again to download it"
fi
echo "Extracting $ARCHIVE"
staging="$(mktemp -d "$DATA_DIR/.extract.XXXXXX")"
tar -xzf "$ARCHIVE" -C "$staging" || fail "could not extract $ARCHIVE; delete it and run this script again"
check_count "$staging/text" "$ARCHIVE"
# mv into an existing folder would nest the copy in it (data/text/text) instead of failing
[[ ! -e "$TEXT_DIR" ]] \
    || fail "$TEXT_DIR appeared while this run extracted; check it, or delete it and run this script again"
mv -- "$staging/text" "$TEXT_DIR"
printf '%s\n' "Corpus ready: $found articles in $TEXT_DIR" "$LICENCE"

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
# Every step writes to a temporary name and renames only when complete, so an interrupted or failed
# run never leaves a data/ that a later run (or prepare.py) would take for complete. Runs started
# together (two sweeps on a fresh clone) take turns on data/.download.lock: the second waits for the
# first, then finds the corpus there.
set -euo pipefail

usage_error() {  # a wrong invocation, told before anything is fetched or checked: exit status 2
    echo "download.sh: error: $* (see bash src/download.sh --help)" >&2
    exit 2
}
for arg in "$@"; do  # an argument used to be ignored: `download.sh --help` started the download
    case "$arg" in
        -h | --help) ;;
        *) usage_error "unknown argument '$arg'; settings are environment variables" ;;
    esac
done
if (($# > 0)); then  # --help: the comment above, without its '#'
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"
    exit 0
fi

URL="${LIVEDOOR_URL:-https://www.rondhuit.com/download/ldcc-20140209.tar.gz}"
# Checked first: a count that is not a number never equals the articles found, and the message then
# told the user to delete a good corpus.
EXPECTED_ARTICLES="${LIVEDOOR_EXPECTED_ARTICLES-7367}"
[[ "$EXPECTED_ARTICLES" =~ ^0*[1-9][0-9]{0,8}$ ]] \
    || usage_error "LIVEDOOR_EXPECTED_ARTICLES is '$EXPECTED_ARTICLES'; it is a positive integer, the article count"
EXPECTED_ARTICLES=$((10#$EXPECTED_ARTICLES))  # 07367 is 7367, as the count it is compared with is written
CATEGORIES=(dokujo-tsushin it-life-hack kaden-channel livedoor-homme movie-enter peachy smax sports-watch topic-news)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DATA_DIR="$ROOT/data"
ARCHIVE="$DATA_DIR/ldcc-20140209.tar.gz"
TEXT_DIR="$DATA_DIR/text"

fail() {
    echo "download.sh: error: $*" >&2
    exit 1
}

print_licence() {
    echo "The livedoor news corpus is (c) RONDHUIT Co., Ltd., licensed under CC BY-ND 2.1 JP"
    echo "(https://creativecommons.org/licenses/by-nd/2.1/jp/); see https://www.rondhuit.com/download.html#ldcc"
    echo "Do not redistribute the corpus or data derived from it."
}

count_articles() {  # article files, i.e. every text/<category>/*.txt except the per-category LICENSE.txt
    find "$1" -mindepth 2 -maxdepth 2 -name '*.txt' ! -name 'LICENSE.txt' | wc -l | tr -d ' '
}

fetch() {  # fetch URL to FILE; file:// is copied directly because wget cannot read it
    local url="$1" file="$2"
    case "$url" in
        file://*) cp -- "${url#file://}" "$file" ;;
        *)
            if command -v curl >/dev/null 2>&1; then
                curl --fail --location --silent --show-error --retry 3 --connect-timeout 20 -o "$file" "$url"
            elif command -v wget >/dev/null 2>&1; then
                wget --quiet --tries=3 --timeout=20 -O "$file" "$url"
            else
                fail "neither curl nor wget is installed; install one of them"
            fi
            ;;
    esac
}

verify_archive() {  # a readable gzip tar holding text/<category>/ for all nine categories
    local listing
    listing="$(tar -tzf "$1" 2>/dev/null)" || return 1
    for category in "${CATEGORIES[@]}"; do
        grep -q "^\(\./\)\?text/$category/" <<<"$listing" || return 1
    done
}

mkdir -p "$DATA_DIR"
# Held until the script exits (the kernel drops it then, even after kill -9), over the check below as
# well: two runs that both found no data/text both extracted it, and the second `mv` put its copy
# inside the first's, as data/text/text. The file stays: deleting a lock file others may have open
# would let a third run lock a new one while the second still holds the old.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$DATA_DIR/.download.lock"
    flock 9
    # Holding the lock, no other run is writing: a partial download or extraction here is a killed run's
    # (kill -9 skips the traps that remove them) and would stay forever.
    rm -rf -- "$ARCHIVE".part.* "$DATA_DIR"/.extract.*
else
    echo "download.sh: warning: flock (util-linux) not found: do not start two downloads at once" >&2
fi

if [[ -d "$TEXT_DIR" ]]; then
    found="$(count_articles "$TEXT_DIR")"
    [[ "$found" == "$EXPECTED_ARTICLES" ]] \
        || fail "$TEXT_DIR holds $found articles, expected $EXPECTED_ARTICLES; delete it and run this script again"
    echo "Corpus already in $TEXT_DIR ($found articles): nothing to do."
    print_licence
    exit 0
fi

if [[ ! -f "$ARCHIVE" ]]; then
    echo "Downloading $URL"
    partial="$(mktemp "$ARCHIVE.part.XXXXXX")"
    trap 'rm -f "$partial"' EXIT
    fetch "$URL" "$partial" || fail "could not download $URL; check the network or set LIVEDOOR_URL to a mirror"
    verify_archive "$partial" || fail "$URL is not the livedoor corpus (not a readable .tar.gz with text/<9 categories>/)"
    # mktemp made it 0600; the archive gets the mode of any new file, 0666 less the umask, as curl -o gives
    chmod "$(printf '%o' $((0666 & ~8#$(umask))))" "$partial"
    mv -- "$partial" "$ARCHIVE"
    trap - EXIT
elif ! verify_archive "$ARCHIVE"; then
    rm -f -- "$ARCHIVE"
    fail "$ARCHIVE was corrupt and has been removed; run this script again to download it"
fi

echo "Extracting $ARCHIVE"
staging="$(mktemp -d "$DATA_DIR/.extract.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
tar -xzf "$ARCHIVE" -C "$staging" || fail "could not extract $ARCHIVE; delete it and run this script again"
found="$(count_articles "$staging/text")"
[[ "$found" == "$EXPECTED_ARTICLES" ]] \
    || fail "$ARCHIVE holds $found articles, expected $EXPECTED_ARTICLES; delete it and run this script again"
# mv into an existing folder would nest the copy in it (data/text/text) instead of failing
[[ ! -e "$TEXT_DIR" ]] || fail "$TEXT_DIR appeared while this run extracted; check it, or delete it and run this script again"
mv -- "$staging/text" "$TEXT_DIR"

echo "Corpus ready: $found articles in $TEXT_DIR"
print_licence

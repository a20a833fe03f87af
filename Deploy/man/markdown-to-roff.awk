# Docs/configuration.md as the body of fence-router.conf(5): the one text of the keys, in two
# forms. Handles what that file uses: headings, paragraphs, tables, code blocks, `code`, **bold**
# and [links](…).
function inline(text) {
    gsub(/\\/, "\\e", text)
    while (match(text, /\[[^]]*\]\([^)]*\)/)) {
        link = substr(text, RSTART, RLENGTH)
        sub(/\]\(.*$/, "", link)
        text = substr(text, 1, RSTART - 1) substr(link, 2) substr(text, RSTART + RLENGTH)
    }
    while (match(text, /\*\*[^*]+\*\*/)) text = substr(text, 1, RSTART - 1) "\\fB" substr(text, RSTART + 2, RLENGTH - 4) "\\fR" substr(text, RSTART + RLENGTH)
    while (match(text, /`[^`]+`/)) text = substr(text, 1, RSTART - 1) "\\fB" substr(text, RSTART + 1, RLENGTH - 2) "\\fR" substr(text, RSTART + RLENGTH)
    return text
}
function line(text) {
    if (text ~ /^[.']/) text = "\\&" text
    print text
}
/^# / { next }
/^```/ { code = !code; print (code ? ".nf" : ".fi"); next }
code { gsub(/\\/, "\\e"); line($0); next }
/^## / { heading = substr($0, 4); gsub(/`/, "", heading); print ".SS \"" heading "\""; next }
/^\|[-| ]+\|$/ { next }
/^\| (key|name) \|/ { next }
/^\|/ {
    count = split($0, cells, /[ ]*\|[ ]*/)
    print ".TP"
    line(inline(cells[2]))
    if (count == 5) {
        meaning = cells[4]
        if (cells[3] == "required") meaning = "Required. " meaning
        else if (cells[3] != "—") meaning = "Default " cells[3] ". " meaning
        line(inline(meaning))
    } else {
        line(inline(cells[3]))
    }
    next
}
/^$/ { print ".PP"; next }
{ line(inline($0)) }

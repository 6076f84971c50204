"""hoist/gotemplate.py against Go's text/template and docker's formatter.

The expected strings are what Go 1.22's text/template (with docker/cli's template functions)
prints for the same template and the same data decoded from JSON into interface{} values, as
``docker inspect`` falls back to; each case says what rule it pins.
"""

from __future__ import annotations

import pytest

from hoist.gotemplate import (
    ExecError,
    ParseError,
    Struct,
    format_rows,
    go_json,
    go_sprint,
    parse,
    render,
    render_inspect,
    tabwrite,
)

DATA = {
    "Id": "4f3c2b1a",
    "Name": "/web",
    "State": {"Status": "running", "Running": True, "Paused": False, "Pid": 4242, "ExitCode": 0},
    "RestartCount": 0,
    "Config": {
        "Env": ["PATH=/usr/bin", "LANG=C"],
        "Cmd": ["nginx", "-g", "daemon off;"],
        "Entrypoint": None,
        "Labels": {"maintainer": "me", "app": "web"},
        "ExposedPorts": {"80/tcp": {}},
    },
    "Mounts": [{"Type": "volume", "Name": "data", "Destination": "/data"},
               {"Type": "bind", "Source": "/srv", "Destination": "/srv"}],
    "Empty": [],
    "Ratio": 0.5,
    "Big": 1e6,
    "Zero": 0,
    "Text": "Hello <World> & \"you\"",
}

CASES = [
    # fields, chains and what a missing key prints
    ("{{.Name}}", "/web"),
    ("{{.State.Status}}/{{.State.Pid}}", "running/4242"),
    ("{{.Nope}}", "<no value>"),
    ("{{.Nope.Deeper}}", "<no value>"),              # a field of nothing is nothing
    ("{{.Config.Entrypoint}}", "<nil>"),             # a JSON null is a nil interface
    ("{{.State.Running}} {{.Zero}}", "true 0"),
    ("{{$.Name}}", "/web"),
    # fmt's %v
    ("{{.Config.Cmd}}", "[nginx -g daemon off;]"),
    ("{{.Config.Labels}}", "map[app:web maintainer:me]"),  # maps print in key order
    ("{{.Config.ExposedPorts}}", "map[80/tcp:map[]]"),
    ("{{.Ratio}} {{.Big}} {{1.5}} {{0.00001}}", "0.5 1e+06 1.5 1e-05"),
    ("{{.Empty}}", "[]"),
    # json: encoding/json without HTML escaping, dicts in their (struct) order
    ("{{json .Mounts}}", '[{"Type":"volume","Name":"data","Destination":"/data"},'
                         '{"Type":"bind","Source":"/srv","Destination":"/srv"}]'),
    ("{{json .Config.Entrypoint}} {{json .Nope}} {{json .Empty}}", "null null []"),
    ("{{json .Text}}", '"Hello <World> & \\"you\\""'),
    ("{{json .Big}} {{json 1e-7}}", "1000000 1e-7"),
    ("{{json .State.Running}}", "true"),
    # range
    ("{{range .Config.Env}}[{{.}}]{{end}}", "[PATH=/usr/bin][LANG=C]"),
    ("{{range $i, $e := .Config.Cmd}}{{$i}}={{$e}};{{end}}", "0=nginx;1=-g;2=daemon off;;"),
    ("{{range $k, $v := .Config.Labels}}{{$k}}:{{$v}} {{end}}", "app:web maintainer:me "),
    ("{{range $v := .Config.Labels}}{{$v}},{{end}}", "web,me,"),  # one variable: the element
    ("{{range .Empty}}x{{else}}none{{end}}", "none"),
    ("{{range .Nope}}x{{else}}none{{end}}", "none"),
    ("{{range .Mounts}}{{.Destination}} {{end}}", "/data /srv "),
    ("{{range 3}}{{.}}{{end}}", "012"),
    ("{{range .Config.Env}}{{if eq . \"LANG=C\"}}{{break}}{{end}}{{.}}{{end}}", "PATH=/usr/bin"),
    ("{{range .Config.Cmd}}{{if eq . \"-g\"}}{{continue}}{{end}}{{.}}|{{end}}", "nginx|daemon off;|"),
    # if / else / with
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{if .Empty}}a{{else if .Zero}}b{{else if .Name}}c{{else}}d{{end}}", "c"),
    ("{{if .Config.Entrypoint}}ep{{else}}no ep{{end}}", "no ep"),
    ("{{if .Config.ExposedPorts}}ports{{end}}", "ports"),
    ("{{with .State}}{{.Status}}{{end}}", "running"),
    ("{{with .Nope}}x{{else}}y{{end}}", "y"),
    ("{{with $s := .State}}{{$s.Pid}}{{end}}", "4242"),
    ("{{if and .State.Running (eq .State.ExitCode 0)}}ok{{end}}", "ok"),
    ("{{or .Empty .Zero \"fallback\"}} {{and 1 0 2}} {{not .Empty}}", "fallback 0 true"),
    # index, len, slice
    ('{{index .Config.Labels "app"}}', "web"),
    ('{{index .Config.Labels "missing"}}', "<nil>"),    # the zero value of interface{}
    ("{{index .Config.Cmd 1}}", "-g"),
    ("{{(index .Mounts 1).Source}}", "/srv"),
    ("{{len .Config.Env}} {{len .Name}} {{len .Config.Labels}}", "2 4 2"),
    ('{{slice .Name 1}} {{slice .Config.Cmd 1 2}}', "web [-g]"),
    # docker's functions
    ('{{join .Config.Cmd " "}}', "nginx -g daemon off;"),
    ('{{split "a,b,,c" ","}}', "[a b  c]"),
    ('{{lower "ABC"}} {{upper .Name}} {{title "hello wide-world"}}', "abc /WEB Hello Wide-World"),
    ('{{pad "x" 2 1}}|{{truncate .Id 4}}|{{truncate "ab" 5}}', "  x |4f3c|ab"),
    # print family
    ("{{println .Name}}", "/web\n"),
    ("{{println}}", "\n"),
    ("{{print 1 2 \"a\" 3}}", "1 2a3"),                  # spaces only between non-strings
    ('{{printf "%s:%d %5.2f %-4s| %q %v %t %x" .Name .State.Pid .Ratio "ab" "q" .Config.Cmd true 255}}',
     '/web:4242  0.50 ab  | "q" [nginx -g daemon off;] true ff'),
    ('{{printf "%d" .Name}}', "%!d(string=/web)"),
    ('{{.Name | printf "%s!"}}', "/web!"),
    ('{{.State.Pid | printf "%d-%s" 1}}', "1-%!s(int=4242)"),
    ("{{html .Text}}", "Hello &lt;World&gt; &amp; &#34;you&#34;"),
    ('{{js "a\'b<c"}}', "a\\'b\\u003Cc"),
    ('{{urlquery "a b&c"}}', "a+b%26c"),
    # comparisons
    ('{{eq .State.Status "exited" "running"}} {{ne .Zero 1}} {{lt 1 2}} {{ge "b" "a"}}', "true true true true"),
    ("{{eq .Config.Entrypoint .Nope}}", "true"),         # nil against nothing
    ('{{eq .Config.Entrypoint "x"}}', "false"),         # nil against a value: false, no error
    # variables, trim markers, comments, literals
    ("{{$x := 1}}{{if true}}{{$x = 2}}{{end}}{{$x}}", "2"),
    ("{{$n := .Name}}{{range .Config.Env}}{{$n}}{{end}}", "/web/web"),
    ("a  {{- .Zero -}}  b", "a0b"),
    ("a {{- /* why */ -}} b", "ab"),
    ("x{{/* a\nmultiline comment */}}y", "xy"),
    ('{{"tab\\there"}} {{`raw\\n`}} {{\'a\'}} {{0x10}} {{-3}}', "tab\there raw\\n 97 16 -3"),
    ("{{define \"T\"}}<{{.}}>{{end}}{{template \"T\" .State.Status}}", "<running>"),
    ("{{block \"B\" .Name}}[{{.}}]{{end}}", "[/web]"),
    ("{{ .Name }}", "/web"),
    ("{{.Name\n}}", "/web"),
]


@pytest.mark.parametrize(("template", "expected"), CASES, ids=[c[0][:40] for c in CASES])
def test_go_semantics(template: str, expected: str) -> None:
    assert render(template, DATA) == expected


PARSE_ERRORS = [
    ("{{.Name", "template: :1: unclosed action"),
    ("{{nosuch .Name}}", 'template: :1: function "nosuch" not defined'),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{if .X}}open", "template: :1: unexpected EOF"),
    ("line1\n{{$undefined}}", 'template: :2: undefined variable "$undefined"'),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{range .X}}{{else}}{{continue}}{{end}}", "template: :1: {{continue}} outside {{range}}"),
    ("{{.X | 3}}", "template: :1: non executable command in pipeline stage 2"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{(.X}}", "template: :1: unclosed left paren"),
    ('{{"abc}}', "template: :1: unterminated quoted string"),
    ("{{/* open }}", "template: :1: unclosed comment"),
    ("{{.X ! .Y}}", "template: :1: unrecognized character in action: U+0021 '!'"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
]


@pytest.mark.parametrize(("template", "message"), PARSE_ERRORS, ids=[c[0] for c in PARSE_ERRORS])
def test_parse_errors_are_go_s(template: str, message: str) -> None:
    with pytest.raises(ParseError) as e:
        parse(template)
    assert str(e.value) == message


EXEC_ERRORS = [
    ("{{.Config.Entrypoint.X}}", 'template: :1:2: executing "" at <.Config.Entrypoint.X>: '
                                 "nil pointer evaluating interface {}.X"),
    ("{{.Name.X}}", 'template: :1:2: executing "" at <.Name.X>: can\'t evaluate field X in type string'),
    ("{{lower .Nope}}", 'template: :1:8: executing "" at <.Nope>: invalid value; expected string'),
    ("{{lower 3}}", 'template: :1:8: executing "" at <3>: expected string; found 3'),
    ("{{lower .Zero}}", 'template: :1:8: executing "" at <.Zero>: wrong type for value; expected string; got int'),
    ("{{lower nil}}", 'template: :1:8: executing "" at <nil>: cannot assign nil to string'),
    ('{{truncate .Name "x"}}', 'template: :1:17: executing "" at <"x">: expected integer; found "x"'),
    ("{{$x := 1}}{{$y = 2}}", 'template: :1:13: executing "" at <$y = 2>: undefined variable: $y'),
    ("{{index .Config.Cmd 9}}", 'template: :1:2: executing "" at <index .Config.Cmd 9>: '
                                "error calling index: index out of range: 9"),
    ("{{len 3}}", 'template: :1:2: executing "" at <len 3>: error calling len: len of type int'),
    ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
    ('{{template "none"}}', 'template: :1:2: executing "" at <{{template "none"}}>: template "none" not defined'),
    ("{{range .Name}}{{end}}", 'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web'),
    ('{{lower "a" "b"}}', 'template: :1:2: executing "" at <lower>: wrong number of args for lower: want 1 got 2'),
    ('{{eq .Zero "0"}}', 'template: :1:2: executing "" at <eq .Zero "0">: error calling eq: '
                         "incompatible types for comparison"),
    ('{{"x" | .Name}}', 'template: :1:8: executing "" at <.Name>: Name is not a method but has arguments'),
]


@pytest.mark.parametrize(("template", "message"), EXEC_ERRORS, ids=[c[0] for c in EXEC_ERRORS])
def test_exec_errors_are_go_s(template: str, message: str) -> None:
    with pytest.raises(ExecError) as e:
        render(template, DATA)
    assert str(e.value) == message


def test_struct_missing_field_is_an_error_and_inspect_falls_back_to_the_raw_map() -> None:
    typed = Struct("*formatter.ContainerContext", {"ID": "abc", "Names": "web"})
    with pytest.raises(ExecError, match="can't evaluate field Nope in type \\*formatter.ContainerContext"):
        render("{{.Nope}}", typed)
    assert render("{{.ID}}", typed) == "abc"
    assert go_sprint(Struct("types.ContainerState", {"Status": "running", "Pid": 3})) == "{running 3}"
    # docker inspect: typed first, the JSON map when the typed value has no such field
    raw = {"ID": "abc", "Names": "web"}
    assert render_inspect("{{.ID}} {{.Nope}}", typed, raw) == "abc <no value>"


def test_exec_depth_is_bounded() -> None:
    with pytest.raises(ExecError, match="exceeded maximum template depth"):
        render('{{define "r"}}{{template "r" .}}{{end}}{{template "r" .}}', DATA)


def test_json_string_escapes_as_go() -> None:
    assert go_json("a\nb\t\x01\u2028\ud800é") == '"a\\nb\\t\\u0001\\u2028\\ufffdé"'
    assert go_json({"b": 1, "a": [True, None, 1.5]}) == '{"b":1,"a":[true,null,1.5]}'


def test_table_format_aligns_like_tabwriter_with_docker_headers() -> None:
    rows = [{"ID": "abc", "Names": "web", "Status": "Up 2 minutes"},
            {"ID": "0123456789ab", "Names": "database-long-name", "Status": "Exited (0)"}]
    headers = {"ID": "CONTAINER ID", "Names": "NAMES", "Status": "STATUS"}
    out = format_rows("table {{.ID}}\\t{{.Names}}\\t{{.Status}}", rows, headers)
    assert out == ("CONTAINER ID   NAMES                STATUS\n"
                   "abc            web                  Up 2 minutes\n"
                   "0123456789ab   database-long-name   Exited (0)\n")
    # header functions keep the header text intact; minwidth 10 applies to short columns
    out = format_rows("table {{lower .ID}}\t{{json .Names}}", [{"ID": "AB", "Names": "x"}], headers)
    assert out == "CONTAINER ID   NAMES\nab             \"x\"\n"
    out = format_rows("table {{.Names}}\t{{.ID}}", [{"ID": "1", "Names": "a"}], {"ID": "ID", "Names": "N"})
    assert out == "N         ID\na         1\n"
    # a bare "table" is the verb's default table format
    assert format_rows("table", rows[:1], headers, default="{{.ID}}\t{{.Names}}") == \
        "CONTAINER ID   NAMES\nabc            web\n"


def test_non_table_format_expands_escapes_and_ends_each_row() -> None:
    rows = [{"ID": "a", "Names": "x"}, {"ID": "b", "Names": "y"}]
    assert format_rows(" {{.ID}}\\t{{.Names}} ", rows, {}) == "a\tx\nb\ty\n"
    assert format_rows("{{.ID}}\\n", rows[:1], {}) == "a\n\n"


def test_tabwriter_column_blocks() -> None:
    # a line without the column ends that column's block, as in Go's tabwriter
    # (minwidth 10, padding 3: column 0 of the first block is 11 + 3 wide)
    assert tabwrite("a\tb\tc\nlonger-cell\tx\nno tabs\nq\tr\n") == (
        "a" + " " * 13 + "b" + " " * 9 + "c\n"
        "longer-cell" + " " * 3 + "x\n"
        "no tabs\n"
        "q" + " " * 9 + "r\n")

FROM alpine
RUN <<EOF
FOO bar
EOF
BAR baz

FROM alpine
RUN <<EOF
set -e
echo "$HOME"
EOF
RUN <<-EOT sh
	echo tabs are stripped from the body
		and the terminator may be indented with tabs
	EOT
COPY <<'A' <<"B" /etc/conf/
literal $NOT_EXPANDED
A
also literal ${X}
B
COPY <<file.txt /dest
expanded $HOME
file.txt
RUN cat <<one >/one && cat 3<<two >/two
first
one
second
two
RUN ["cat", "<<NOTAHEREDOC"]
RUN cat<<NOT_A_MARKER
ONBUILD RUN <<EOF
echo on build
EOF
ADD <<EOF /added
x
EOF
RUN python3 <<PY
print("hi")
PY

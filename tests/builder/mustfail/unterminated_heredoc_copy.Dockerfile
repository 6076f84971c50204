FROM alpine
COPY <<a <<b /x
A
a
B

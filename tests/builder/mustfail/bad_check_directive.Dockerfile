# check=skip=all;error=maybe
FROM alpine

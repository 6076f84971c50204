# escape=`
# ESCAPE=\
FROM alpine

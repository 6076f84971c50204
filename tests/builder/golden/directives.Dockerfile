# syntax=docker/dockerfile:1.7
#  ESCAPE = `
# check=skip=JSONArgsRecommended;error=true
FROM mcr.microsoft.com/windows/servercore:ltsc2022
RUN dir c:\ `
    && echo done
COPY app\bin c:\app\

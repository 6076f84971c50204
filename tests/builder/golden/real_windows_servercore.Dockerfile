# escape=`

FROM mcr.microsoft.com/windows/servercore:ltsc2022

SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop'; $ProgressPreference = 'SilentlyContinue';"]

ENV REDIS_VERSION 3.0.504
ENV REDIS_DOWNLOAD_URL https://github.com/microsoftarchive/redis/releases/download/win-${REDIS_VERSION}/Redis-x64-${REDIS_VERSION}.zip

RUN Write-Host ('Downloading {0} ...' -f $env:REDIS_DOWNLOAD_URL); `
	Invoke-WebRequest -Uri $env:REDIS_DOWNLOAD_URL -OutFile 'redis.zip'; `
	`
	Write-Host 'Expanding ...'; `
	Expand-Archive redis.zip -DestinationPath C:\Program` Files\Redis; `
	Remove-Item redis.zip -Force

WORKDIR C:\Program Files\Redis
COPY ["redis.windows.conf", "C:/Program Files/Redis/"]
EXPOSE 6379
CMD ["redis-server.exe", "redis.windows.conf"]

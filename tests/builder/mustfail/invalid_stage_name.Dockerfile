FROM alpine AS 1build

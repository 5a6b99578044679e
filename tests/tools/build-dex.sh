#!/usr/bin/env bash
# Build Dex (the OpenID provider the single-sign-on tests log in through) from its Go module at a pinned commit:
#   tests/tools/build-dex.sh VERSION OUTPUT
# Dex's gRPC admin API is left out of the build: it lives in the nested module github.com/dexidp/dex/api/v2, which
# the Go module proxy does not serve at this commit. The OpenID provider itself (discovery, keys, the login page,
# the password database, tokens, refresh) is built unchanged; a config with a `grpc:` block is refused at start.
set -euo pipefail
version=$1
out=$(realpath -m "$2")
go=${GO:-go}
dir=$($go mod download -json "github.com/dexidp/dex@$version" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
work=$(mktemp -d)
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$dir/." "$work"
chmod -R u+w "$work"
cd "$work"
serve=cmd/dex/serve.go
grep -q 'api.RegisterDexServer(grpcSrv, apiserver.NewAPI(' "$serve" || { echo "build-dex: $serve changed; update the patch" >&2; exit 1; }
sed -i \
  -e '/"github.com\/dexidp\/dex\/api\/v2"/d' \
  -e '/"github.com\/dexidp\/dex\/server\/apiserver"/d' \
  -e 's|^\t\tapi.RegisterDexServer(grpcSrv, apiserver.NewAPI(.*$|\t\treturn fmt.Errorf("grpc: the gRPC admin API is left out of this build")|' \
  "$serve"
$go mod edit -dropreplace github.com/dexidp/dex/api/v2 -droprequire github.com/dexidp/dex/api/v2
CGO_ENABLED=0 $go build -mod=readonly -trimpath -o "$out" ./cmd/dex

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	jwtauthnv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"

	"github.com/latchauth/latch/server"
	"github.com/latchauth/latch/server/extauthz"
)

var meshExample = regexp.MustCompile("(?s)<!-- mesh-example: (\\S+) -->\n```(?:yaml|json)\n(.*?)```")

// readmeExamples returns the blocks of docs/service-mesh.md marked
// "mesh-example", by name.
func readmeExamples(t *testing.T) map[string]string {
	t.Helper()
	readme, err := os.ReadFile("../../docs/service-mesh.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := map[string]string{}
	for _, m := range meshExample.FindAllStringSubmatch(string(readme), -1) {
		if _, dup := blocks[m[1]]; dup {
			t.Fatalf("docs/service-mesh.md has two mesh-example blocks named %s", m[1])
		}
		blocks[m[1]] = m[2]
	}
	for _, want := range []string{"envoy-ext-authz", "envoy-jwt-authn", "istio-request-authentication", "istio-ext-authz", "latch-policy"} {
		if _, ok := blocks[want]; !ok {
			t.Fatalf("docs/service-mesh.md has no mesh-example block %s", want)
		}
	}
	return blocks
}

// yamlDocs decodes every document of a YAML stream into plain values.
func yamlDocs(t *testing.T, src string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(src))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("YAML: %v", err)
		}
		docs = append(docs, d)
	}
}

type validator interface{ ValidateAll() error }

// parseBootstrap reads an Envoy config the way Envoy does: YAML to JSON,
// strict protojson (unknown fields are errors) into Bootstrap, then the
// field rules Envoy enforces (protoc-gen-validate), also inside every
// typed_config.
func parseBootstrap(t *testing.T, src string) *bootstrapv3.Bootstrap {
	t.Helper()
	docs := yamlDocs(t, src)
	if len(docs) != 1 {
		t.Fatalf("want one YAML document, got %d", len(docs))
	}
	js, err := json.Marshal(docs[0])
	if err != nil {
		t.Fatal(err)
	}
	var b bootstrapv3.Bootstrap
	if err := protojson.Unmarshal(js, &b); err != nil {
		t.Fatalf("not an Envoy bootstrap: %v", err)
	}
	if err := b.ValidateAll(); err != nil {
		t.Fatalf("Envoy would refuse it: %v", err)
	}
	validateAny := func(what string, a *anypb.Any) proto.Message {
		t.Helper()
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if v, ok := m.(validator); ok {
			if err := v.ValidateAll(); err != nil {
				t.Fatalf("%s: Envoy would refuse it: %v", what, err)
			}
		}
		return m
	}
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm, ok := validateAny(f.GetName(), f.GetTypedConfig()).(*hcmv3.HttpConnectionManager)
				if !ok {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					validateAny(hf.GetName(), hf.GetTypedConfig())
				}
			}
		}
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		for name, a := range c.GetTypedExtensionProtocolOptions() {
			validateAny(name, a)
		}
	}
	return &b
}

func httpFilters(t *testing.T, b *bootstrapv3.Bootstrap) map[string]proto.Message {
	t.Helper()
	out := map[string]proto.Message{}
	var hcm hcmv3.HttpConnectionManager
	if err := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	for _, hf := range hcm.GetHttpFilters() {
		m, _ := hf.GetTypedConfig().UnmarshalNew()
		out[hf.GetName()] = m
	}
	if names := hcm.GetHttpFilters(); len(names) == 0 || names[len(names)-1].GetName() != "envoy.filters.http.router" {
		t.Error("the router must be the last HTTP filter")
	}
	return out
}

func clusterPorts(b *bootstrapv3.Bootstrap) map[string]uint32 {
	ports := map[string]uint32{}
	for _, c := range b.GetStaticResources().GetClusters() {
		ports[c.GetName()] = c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetPortValue()
	}
	return ports
}

func TestReadmeEnvoyExtAuthzExample(t *testing.T) {
	b := parseBootstrap(t, readmeExamples(t)["envoy-ext-authz"])
	f := httpFilters(t, b)
	ea, ok := f["envoy.filters.http.ext_authz"]
	if !ok {
		t.Fatal("no ext_authz filter")
	}
	js, _ := protojson.Marshal(ea)
	for _, want := range []string{`"clusterName":"latch_ext_authz"`, `"transportApiVersion":"V3"`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("ext_authz config lacks %s: %s", want, js)
		}
	}
	if strings.Contains(string(js), `"failureModeAllow":true`) {
		t.Error("ext_authz example fails open")
	}
	if got := clusterPorts(b)["latch_ext_authz"]; got != 7302 {
		t.Errorf("latch_ext_authz port = %d, want 7302 (the documented --ext-authz-addr)", got)
	}
	for _, c := range b.GetStaticResources().GetClusters() {
		if c.GetName() == "latch_ext_authz" && c.GetHealthChecks()[0].GetGrpcHealthCheck().GetServiceName() != "latch.verifier" {
			t.Error("the ext_authz cluster does not health-check latch.verifier")
		}
	}
}

func TestReadmeEnvoyJWTAuthnExample(t *testing.T) {
	b := parseBootstrap(t, readmeExamples(t)["envoy-jwt-authn"])
	ja, ok := httpFilters(t, b)["envoy.filters.http.jwt_authn"].(*jwtauthnv3.JwtAuthentication)
	if !ok {
		t.Fatal("no jwt_authn filter")
	}
	p := ja.GetProviders()["latch"]
	if p == nil {
		t.Fatal("no provider latch")
	}
	if want := p.GetIssuer() + server.JWKSPath; p.GetRemoteJwks().GetHttpUri().GetUri() != want {
		t.Errorf("jwks uri = %s, want %s (what Latch's discovery document says)", p.GetRemoteJwks().GetHttpUri().GetUri(), want)
	}
	if ports := clusterPorts(b); ports[p.GetRemoteJwks().GetHttpUri().GetCluster()] != 7301 {
		t.Errorf("jwks cluster %q does not point at Latch's HTTP port 7301: %v", p.GetRemoteJwks().GetHttpUri().GetCluster(), ports)
	}
	if !slices.Contains(p.GetAudiences(), "orders") {
		t.Error("provider accepts any audience")
	}
}

// checkKeys fails on any key of m not in known: a typo in an Istio
// resource is silently ignored by nothing but a validating webhook.
func checkKeys(t *testing.T, what string, m any, known ...string) map[string]any {
	t.Helper()
	mm, ok := m.(map[string]any)
	if !ok {
		t.Fatalf("%s: not a mapping: %v", what, m)
	}
	for k := range mm {
		if !slices.Contains(known, k) {
			t.Errorf("%s: unknown field %q", what, k)
		}
	}
	return mm
}

func list(t *testing.T, what string, v any) []any {
	t.Helper()
	l, ok := v.([]any)
	if !ok || len(l) == 0 {
		t.Fatalf("%s: want a non-empty list, got %v", what, v)
	}
	return l
}

func TestReadmeIstioRequestAuthenticationExample(t *testing.T) {
	docs := yamlDocs(t, readmeExamples(t)["istio-request-authentication"])
	if len(docs) != 2 {
		t.Fatalf("want RequestAuthentication and AuthorizationPolicy, got %d documents", len(docs))
	}
	ra := checkKeys(t, "RequestAuthentication", docs[0], "apiVersion", "kind", "metadata", "spec")
	if ra["apiVersion"] != "security.istio.io/v1" || ra["kind"] != "RequestAuthentication" {
		t.Fatalf("first document: %v %v", ra["apiVersion"], ra["kind"])
	}
	spec := checkKeys(t, "spec", ra["spec"], "selector", "targetRef", "targetRefs", "jwtRules")
	rule := checkKeys(t, "jwtRules[0]", list(t, "jwtRules", spec["jwtRules"])[0], "issuer", "audiences", "jwksUri", "jwks",
		"fromHeaders", "fromParams", "fromCookies", "outputPayloadToHeader", "forwardOriginalToken", "outputClaimToHeaders", "timeout")
	iss, _ := rule["issuer"].(string)
	if rule["jwksUri"] != iss+server.JWKSPath {
		t.Errorf("jwksUri %v is not the issuer's %s", rule["jwksUri"], server.JWKSPath)
	}
	for _, h := range list(t, "outputClaimToHeaders", rule["outputClaimToHeaders"]) {
		checkKeys(t, "outputClaimToHeaders", h, "header", "claim")
	}

	ap := checkKeys(t, "AuthorizationPolicy", docs[1], "apiVersion", "kind", "metadata", "spec")
	if ap["kind"] != "AuthorizationPolicy" {
		t.Fatalf("second document: %v", ap["kind"])
	}
	apSpec := checkKeys(t, "spec", ap["spec"], "selector", "targetRef", "targetRefs", "action", "provider", "rules")
	from := checkKeys(t, "rules[0]", list(t, "rules", apSpec["rules"])[0], "from", "to", "when")
	src := checkKeys(t, "from[0]", list(t, "from", from["from"])[0], "source")
	principals := list(t, "requestPrincipals", checkKeys(t, "source", src["source"], "principals", "notPrincipals",
		"requestPrincipals", "notRequestPrincipals", "namespaces", "notNamespaces", "ipBlocks", "notIpBlocks",
		"remoteIpBlocks", "notRemoteIpBlocks")["requestPrincipals"])
	if principals[0] != iss+"/*" {
		t.Errorf("requestPrincipals %v do not name the issuer %s", principals, iss)
	}
}

func TestReadmeIstioExtAuthzExample(t *testing.T) {
	docs := yamlDocs(t, readmeExamples(t)["istio-ext-authz"])
	if len(docs) != 2 {
		t.Fatalf("want mesh config and AuthorizationPolicy, got %d documents", len(docs))
	}
	mesh := checkKeys(t, "meshConfig", checkKeys(t, "mesh config", docs[0], "meshConfig")["meshConfig"], "extensionProviders")
	prov := checkKeys(t, "extensionProviders[0]", list(t, "extensionProviders", mesh["extensionProviders"])[0], "name", "envoyExtAuthzGrpc")
	grpcProv := checkKeys(t, "envoyExtAuthzGrpc", prov["envoyExtAuthzGrpc"], "service", "port", "timeout", "failOpen",
		"statusOnError", "includeRequestBody", "pathPrefix")
	if grpcProv["port"] != 7302 || grpcProv["failOpen"] != false {
		t.Errorf("provider = %v, want port 7302 and failOpen false", grpcProv)
	}
	ap := checkKeys(t, "AuthorizationPolicy", docs[1], "apiVersion", "kind", "metadata", "spec")
	spec := checkKeys(t, "spec", ap["spec"], "selector", "targetRef", "targetRefs", "action", "provider", "rules")
	if spec["action"] != "CUSTOM" || checkKeys(t, "provider", spec["provider"], "name")["name"] != prov["name"] {
		t.Errorf("policy %v does not send requests to provider %v", spec, prov["name"])
	}
}

func TestReadmePolicyExample(t *testing.T) {
	p, err := extauthz.ParsePolicy([]byte(readmeExamples(t)["latch-policy"]), "https://latch.example")
	if err != nil {
		t.Fatalf("documented policy: %v", err)
	}
	if !slices.Equal(p.Audiences(), []string{"orders"}) {
		t.Errorf("audiences = %v", p.Audiences())
	}
	// The testdata policy, used by the tests, parses too.
	data, err := os.ReadFile(testPolicy)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := extauthz.ParsePolicy(bytes.TrimSpace(data), "https://latch.test"); err != nil {
		t.Fatal(err)
	}
}

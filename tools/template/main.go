// Command gitops-agent-template renders app set templates as Argo CD's ApplicationSet controller does: every string
// of a JSON template (map keys and values, at any depth) is rendered on its own, with Go's text/template and
// Masterminds' Sprig functions (goTemplate: true; Sprig's env, expandenv and getHostByName removed, normalize,
// slugify, toYaml, fromYaml and fromYamlArray added, as Argo CD's docs list them) or with valyala's fasttemplate
// (goTemplate: false: {{key}} replaced by the string parameter of that name, left as it is when there is none).
//
// Input (stdin, JSON): {"goTemplate": bool, "goTemplateOptions": [string], "template": any,
// "params": [object, ...], "slugs": [string]}. Output (stdout, JSON): {"results": [{"value": any} | {"error":
// string}, ...], one per parameter set, in order, "slugs": [string]}: each of "slugs" as Argo CD's pull request
// generator makes branch_slug (gosimple/slug, at most 50 characters, "_" as "-"). Exit 2 with a message on stderr
// when the input cannot be read.
//
// Rules from Argo CD's documentation (operator-manual/applicationset/GoTemplate.md and Template.md).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"github.com/gosimple/slug"
	"github.com/valyala/fasttemplate"
	"sigs.k8s.io/yaml"
)

type request struct {
	GoTemplate        bool             `json:"goTemplate"`
	GoTemplateOptions []string         `json:"goTemplateOptions"`
	Template          json.RawMessage  `json:"template"`
	Params            []map[string]any `json:"params"`
	Slugs             []string         `json:"slugs"`
}

type result struct {
	Value any    `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

var invalidDNSChars = regexp.MustCompile("[^-a-z0-9.]")

// normalize: lower case, every character outside [-a-z0-9.] replaced by '-', at most 253 characters, no leading
// or trailing '-' or '.' (Argo CD's SanitizeName).
func normalize(name string) string {
	name = invalidDNSChars.ReplaceAllString(strings.ToLower(name), "-")
	if len(name) > 253 {
		name = name[:253]
	}
	return strings.Trim(name, "-.")
}

// slugify [maxLength [smartTruncate]] name: normalize, then gosimple/slug with the given maximum length (default
// 50) and smart truncation (default true: a word is never cut in two).
func slugify(args ...any) (string, error) {
	maxLength, smart, name := 50, true, ""
	for i, arg := range args {
		var ok bool
		switch i {
		case len(args) - 1:
			name, ok = arg.(string)
		case 0:
			maxLength, ok = arg.(int)
		case 1:
			smart, ok = arg.(bool)
		}
		if !ok {
			return "", fmt.Errorf("slugify: bad argument %d (%v): want [maxLength int [smartTruncate bool]] name string", i, arg)
		}
	}
	slug.MaxLength = maxLength // gosimple/slug's settings are globals: this program renders on one goroutine
	slug.EnableSmartTruncate = smart
	return slug.Make(normalize(name)), nil
}

// branchSlug is a branch name as Argo CD's pull request generator slugs it: gosimple/slug with a maximum length of 50
// and underscores turned into dashes.
func branchSlug(branch string) string {
	slug.MaxLength = 50
	slug.EnableSmartTruncate = true
	slug.CustomSub = map[string]string{"_": "-"}
	defer func() { slug.CustomSub = nil }()
	return slug.Make(branch)
}

func toYaml(v any) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

func fromYaml(s string) map[string]any {
	m := map[string]any{}
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		m["Error"] = err.Error()
	}
	return m
}

func fromYamlArray(s string) []any {
	a := []any{}
	if err := yaml.Unmarshal([]byte(s), &a); err != nil {
		a = []any{err.Error()}
	}
	return a
}

func funcs() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	delete(f, "getHostByName")
	f["normalize"] = normalize
	f["slugify"] = slugify
	f["toYaml"] = toYaml
	f["fromYaml"] = fromYaml
	f["fromYamlArray"] = fromYamlArray
	return f
}

type renderer struct {
	goTemplate bool
	options    []string
	funcs      template.FuncMap
	parsed     map[string]*template.Template
}

func (r *renderer) replace(s string, params map[string]any) (string, error) {
	if !strings.Contains(s, "{{") {
		return s, nil
	}
	if r.goTemplate {
		t, ok := r.parsed[s]
		if !ok {
			var err error
			t, err = template.New("").Funcs(r.funcs).Option(r.options...).Parse(s)
			if err != nil {
				return "", fmt.Errorf("failed to parse template %s: %w", s, err)
			}
			r.parsed[s] = t
		}
		var out bytes.Buffer
		if err := t.Execute(&out, params); err != nil {
			return "", fmt.Errorf("failed to execute go template %s: %w", s, err)
		}
		return out.String(), nil
	}
	t, err := fasttemplate.NewTemplate(s, "{{", "}}")
	if err != nil {
		return "", fmt.Errorf("failed to parse template %s: %w", s, err)
	}
	return t.ExecuteFuncStringWithErr(func(w io.Writer, tag string) (int, error) {
		key := strings.TrimSpace(tag)
		value, ok := params[key].(string)
		if key == "" || !ok {
			return fmt.Fprintf(w, "{{%s}}", tag)
		}
		return w.Write([]byte(value))
	})
}

// render walks v: every string, and every map key, rendered on its own; other values kept.
func (r *renderer) render(v any, params map[string]any) (any, error) {
	switch x := v.(type) {
	case string:
		return r.replace(x, params)
	case []any:
		out := make([]any, len(x))
		for i, item := range x {
			rendered, err := r.render(item, params)
			if err != nil {
				return nil, err
			}
			out[i] = rendered
		}
		return out, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make(map[string]any, len(x))
		for _, k := range keys {
			key, err := r.replace(k, params)
			if err != nil {
				return nil, err
			}
			rendered, err := r.render(x[k], params)
			if err != nil {
				return nil, err
			}
			out[key] = rendered
		}
		return out, nil
	}
	return v, nil
}

func main() {
	var req request
	// Parameters decode as Argo CD's do (numbers as float64, so {{.replicas}} prints 3); the template's own
	// numbers are kept exactly as written.
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fmt.Fprintf(os.Stderr, "gitops-agent-template: reading the request: %v\n", err)
		os.Exit(2)
	}
	var tmpl any
	dec := json.NewDecoder(bytes.NewReader(req.Template))
	dec.UseNumber()
	if err := dec.Decode(&tmpl); err != nil {
		fmt.Fprintf(os.Stderr, "gitops-agent-template: reading the template: %v\n", err)
		os.Exit(2)
	}
	r := &renderer{goTemplate: req.GoTemplate, options: req.GoTemplateOptions, funcs: funcs(), parsed: map[string]*template.Template{}}
	if r.goTemplate {
		for _, o := range r.options {
			if err := checkOption(o); err != nil {
				fmt.Fprintf(os.Stderr, "gitops-agent-template: %v\n", err)
				os.Exit(2)
			}
		}
	}
	results := make([]result, len(req.Params))
	for i, params := range req.Params {
		value, err := r.render(tmpl, params)
		if err != nil {
			results[i] = result{Error: err.Error()}
		} else {
			results[i] = result{Value: value}
		}
	}
	slugs := make([]string, len(req.Slugs))
	for i, branch := range req.Slugs {
		slugs[i] = branchSlug(branch)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetEscapeHTML(false)
	if err := out.Encode(map[string]any{"results": results, "slugs": slugs}); err != nil {
		fmt.Fprintf(os.Stderr, "gitops-agent-template: writing the answer: %v\n", err)
		os.Exit(2)
	}
}

// checkOption refuses an option text/template would panic on.
func checkOption(o string) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("goTemplateOptions: %v", p)
		}
	}()
	template.New("").Option(o)
	return nil
}

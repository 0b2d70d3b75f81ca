package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"
)

// The deploy/ tree is checked against the binary it deploys: every manifest
// decodes strictly with the Kubernetes API types, and the flags, ports,
// probes, volumes and Secrets it uses agree with kmsd's own flag sets.

const deployDir = "../../deploy"

// clusterFlags are the flags of issue #4 the StatefulSet needs; while they
// are missing from kmsd serve, the check fails saying so.
var clusterFlags = []string{"cluster-addr", "cluster-advertise", "api-advertise", "bootstrap", "join", "join-credentials", "cluster-tls-cert", "cluster-tls-key", "cluster-tls-ca"}

// manifest is one decoded YAML document and where it came from.
type manifest struct {
	file string // relative to deployDir
	kind string
	name string
	obj  any
}

// kustomization is the part of kustomize's Kustomization the overlays use;
// a field outside it fails the strict decode (extend it deliberately).
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace,omitempty"`
	Resources  []string `json:"resources"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
		IncludeTemplates bool              `json:"includeTemplates,omitempty"`
	} `json:"labels,omitempty"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName,omitempty"`
		NewTag  string `json:"newTag,omitempty"`
		Digest  string `json:"digest,omitempty"`
	} `json:"images,omitempty"`
}

// newObject returns the Kubernetes API type for apiVersion and kind.
func newObject(apiVersion, kind string) any {
	switch apiVersion + "/" + kind {
	case "apps/v1/Deployment":
		return &appsv1.Deployment{}
	case "apps/v1/StatefulSet":
		return &appsv1.StatefulSet{}
	case "v1/Service":
		return &corev1.Service{}
	case "v1/ConfigMap":
		return &corev1.ConfigMap{}
	case "v1/Secret":
		return &corev1.Secret{}
	case "v1/Namespace":
		return &corev1.Namespace{}
	case "v1/ServiceAccount":
		return &corev1.ServiceAccount{}
	case "v1/Pod":
		return &corev1.Pod{}
	case "policy/v1/PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}
	case "networking.k8s.io/v1/NetworkPolicy":
		return &networkingv1.NetworkPolicy{}
	case "apiserver.config.k8s.io/v1/EncryptionConfiguration":
		return &apiserverv1.EncryptionConfiguration{}
	}
	return nil
}

var docSep = regexp.MustCompile(`(?m)^---\s*$`)

// decodeDocs strictly decodes every YAML document of data.
func decodeDocs(t *testing.T, file string, data []byte) []manifest {
	t.Helper()
	var out []manifest
	for i, doc := range docSep.Split(string(data), -1) {
		var tm struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Errorf("%s: document %d: %v", file, i, err)
			continue
		}
		if tm.APIVersion == "" && tm.Kind == "" {
			continue // comments only
		}
		obj := newObject(tm.APIVersion, tm.Kind)
		if obj == nil {
			t.Errorf("%s: document %d: no Kubernetes type known for %s %s (add it to newObject)", file, i, tm.APIVersion, tm.Kind)
			continue
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Errorf("%s: %s %s: strict decode: %v", file, tm.Kind, tm.Metadata.Name, err)
			continue
		}
		out = append(out, manifest{file: file, kind: tm.Kind, name: tm.Metadata.Name, obj: obj})
	}
	return out
}

// loadKubernetes decodes every YAML file under deploy/kubernetes and
// returns the manifests, the kustomization directories and each file's text.
func loadKubernetes(t *testing.T) ([]manifest, []string, map[string]string) {
	t.Helper()
	root := filepath.Join(deployDir, "kubernetes")
	var all []manifest
	var kdirs []string
	texts := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(deployDir, p)
		texts[rel] = string(data)
		if d.Name() == "kustomization.yaml" {
			var k kustomization
			if err := yaml.UnmarshalStrict(data, &k); err != nil {
				t.Errorf("%s: strict decode: %v", rel, err)
				return nil
			}
			if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
				t.Errorf("%s: apiVersion/kind %s/%s", rel, k.APIVersion, k.Kind)
			}
			for _, r := range k.Resources {
				rp := filepath.Join(filepath.Dir(p), r)
				fi, err := os.Stat(rp)
				switch {
				case err != nil:
					t.Errorf("%s: resource %s: %v", rel, r, err)
				case fi.IsDir():
					if _, err := os.Stat(filepath.Join(rp, "kustomization.yaml")); err != nil {
						t.Errorf("%s: resource %s is a directory without kustomization.yaml", rel, r)
					}
				}
			}
			kdirs = append(kdirs, filepath.Dir(p))
			return nil
		}
		all = append(all, decodeDocs(t, rel, data)...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no manifests found under deploy/kubernetes")
	}
	return all, kdirs, texts
}

// TestKubernetesManifestsKustomize renders every overlay with kubectl
// kustomize (when installed) and strictly decodes the result.
func TestKubernetesManifestsKustomize(t *testing.T) {
	_, kdirs, _ := loadKubernetes(t)
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("kubectl not installed: overlays decoded file by file only")
	}
	for _, dir := range kdirs {
		if !strings.Contains(filepath.ToSlash(dir), "/overlays/") {
			continue
		}
		out, err := exec.Command(kubectl, "kustomize", dir).CombinedOutput()
		if err != nil {
			t.Errorf("kubectl kustomize %s: %v\n%s", dir, err, out)
			continue
		}
		ms := decodeDocs(t, dir+" (rendered)", out)
		cms := map[string]bool{}
		for _, m := range ms {
			if m.kind == "ConfigMap" {
				cms[m.name] = true
			}
		}
		for _, m := range ms {
			for _, spec := range podSpecs(m) {
				for _, c := range allContainers(spec) {
					for _, e := range c.Env {
						if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && !cms[e.ValueFrom.ConfigMapKeyRef.Name] {
							t.Errorf("%s: %s/%s: ConfigMap %s is not in the rendered overlay", dir, m.name, c.Name, e.ValueFrom.ConfigMapKeyRef.Name)
						}
					}
				}
			}
		}
	}
}

func podSpecs(m manifest) []*corev1.PodSpec {
	switch o := m.obj.(type) {
	case *appsv1.Deployment:
		return []*corev1.PodSpec{&o.Spec.Template.Spec}
	case *appsv1.StatefulSet:
		return []*corev1.PodSpec{&o.Spec.Template.Spec}
	case *corev1.Pod:
		return []*corev1.PodSpec{&o.Spec}
	}
	return nil
}

func podLabels(m manifest) map[string]string {
	switch o := m.obj.(type) {
	case *appsv1.Deployment:
		return o.Spec.Template.Labels
	case *appsv1.StatefulSet:
		return o.Spec.Template.Labels
	case *corev1.Pod:
		return o.Labels
	}
	return nil
}

func allContainers(spec *corev1.PodSpec) []*corev1.Container {
	var cs []*corev1.Container
	for i := range spec.InitContainers {
		cs = append(cs, &spec.InitContainers[i])
	}
	for i := range spec.Containers {
		cs = append(cs, &spec.Containers[i])
	}
	return cs
}

// invocation is one kmsd command line found in a container: its
// subcommand, its flag arguments, and the container's script if any.
type invocation struct {
	sub  string   // serve, healthcheck, k8s-kms-plugin
	args []string // flag arguments, quotes removed
}

// kmsdInvocations finds the kmsd command lines of a container: exec form
// (command kmsd, args SUB flags...) or a shell script (command sh -c), where
// each logical line (backslash continuations joined) that runs `kmsd SUB`
// is one invocation, and any other line's --flags (such as
// membership="--bootstrap") belong to the script's `kmsd serve`.
func kmsdInvocations(c *corev1.Container) []invocation {
	argv := append(slices.Clone(c.Command), c.Args...)
	if len(argv) == 0 {
		return nil
	}
	if strings.HasSuffix(argv[0], "/kmsd") || argv[0] == "kmsd" {
		if len(argv) < 2 {
			return nil
		}
		return []invocation{{sub: argv[1], args: argv[2:]}}
	}
	if !(strings.HasSuffix(argv[0], "sh") && len(argv) >= 2 && strings.HasPrefix(argv[1], "-") && strings.Contains(argv[1], "c")) {
		return nil
	}
	script := strings.Join(argv[2:], "\n")
	script = strings.ReplaceAll(script, "\\\n", " ")
	var invs []invocation
	serve := -1
	var extra []string
	for _, line := range strings.Split(script, "\n") {
		words := shellWords(line)
		at := slices.IndexFunc(words, func(w string) bool { return strings.HasSuffix(w, "/kmsd") || w == "kmsd" })
		if at >= 0 && at+1 < len(words) {
			inv := invocation{sub: words[at+1]}
			for _, w := range words[at+2:] {
				if strings.HasPrefix(w, "-") {
					inv.args = append(inv.args, w)
				} else if len(inv.args) > 0 && !strings.Contains(inv.args[len(inv.args)-1], "=") && !strings.HasPrefix(w, "${") {
					inv.args = append(inv.args, w)
				}
			}
			if inv.sub == "serve" {
				serve = len(invs)
			}
			invs = append(invs, inv)
			continue
		}
		for _, m := range scriptFlagRE.FindAllStringSubmatch(line, -1) {
			extra = append(extra, m[1])
		}
	}
	if serve >= 0 {
		for _, e := range extra {
			if !slices.Contains(invs[serve].args, e) {
				invs[serve].args = append(invs[serve].args, e)
			}
		}
	}
	return invs
}

var scriptFlagRE = regexp.MustCompile(`"(--[a-z][a-z0-9-]*(?:=[^"]*)?)"`)

// shellWords splits a line on blanks and removes quotes; good enough for
// the scripts in deploy/ (no nested quoting).
func shellWords(line string) []string {
	var out []string
	for _, w := range strings.Fields(line) {
		w = strings.NewReplacer(`"`, "", `'`, "").Replace(w)
		if w != "" && w != `\` {
			out = append(out, w)
		}
	}
	return out
}

// flagValues maps each --flag of args to its value ("" for a bare flag
// followed by another flag or nothing).
func flagValues(args []string) map[string]string {
	vals := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, val, ok := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !ok && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			val = args[i+1]
			i++
		}
		vals[name] = val
	}
	return vals
}

// checkFlags fails the test for every flag of args that fs does not define,
// then parses args with fs (values with variables are passed as they are:
// only string flags take them).
func checkFlags(t *testing.T, where string, fs *flag.FlagSet, args []string) bool {
	t.Helper()
	ok := true
	for name := range flagValues(args) {
		if fs.Lookup(name) != nil {
			continue
		}
		ok = false
		if slices.Contains(clusterFlags, name) {
			t.Errorf("%s: --%s is not a flag of %s yet: the cluster flags of issue #4 have not landed", where, name, fs.Name())
		} else {
			t.Errorf("%s: --%s is not a flag of %s", where, name, fs.Name())
		}
	}
	if ok {
		if err := fs.Parse(args); err != nil {
			t.Errorf("%s: %s %v: %v", where, fs.Name(), args, err)
			return false
		} else if fs.NArg() > 0 {
			t.Errorf("%s: %s: stray arguments %v", where, fs.Name(), fs.Args())
			return false
		}
	}
	return ok
}

func port(t *testing.T, where, hostport string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Errorf("%s: %q: %v", where, hostport, err)
		return 0
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Errorf("%s: port of %q: %v", where, hostport, err)
	}
	return n
}

// kmsdNode is what the checks learn about one kmsd serve container.
type kmsdNode struct {
	listenPort, raftPort int
	listenHost           string
	flags                map[string]string
}

// TestKubernetesManifests checks that the manifests agree with the binary.
func TestKubernetesManifests(t *testing.T) {
	all, _, texts := loadKubernetes(t)
	secrets, configMaps := map[string]bool{}, map[string]*corev1.ConfigMap{}
	for _, m := range all {
		switch o := m.obj.(type) {
		case *corev1.Secret:
			secrets[o.Name] = true
		case *corev1.ConfigMap:
			configMaps[o.Name] = o
		}
	}
	uid := dockerfileUID(t)
	nodes := map[string]kmsdNode{} // by workload name
	for _, m := range all {
		for _, spec := range podSpecs(m) {
			where := m.file + ": " + m.kind + " " + m.name
			if n, ok := checkPod(t, where, m, spec, texts[m.file], secrets, configMaps, uid); ok {
				nodes[m.name] = n
			}
		}
	}
	if len(nodes) == 0 {
		t.Fatal("no kmsd serve container found in deploy/kubernetes")
	}
	checkCluster(t, all, nodes)
}

var scriptURLRE = regexp.MustCompile(`http://[^\s"',]+:(\d+)`)

var k8sVarRE = regexp.MustCompile(`\$\(([A-Za-z_][A-Za-z0-9_]*)\)`)
var shVarRE = regexp.MustCompile(`\$\{([A-Z_][A-Z0-9_]*)`)

func checkPod(t *testing.T, where string, m manifest, spec *corev1.PodSpec, text string, secrets map[string]bool, configMaps map[string]*corev1.ConfigMap, uid int64) (kmsdNode, bool) {
	t.Helper()
	var node kmsdNode
	found := false
	volumes := map[string]*corev1.Volume{}
	for i := range spec.Volumes {
		volumes[spec.Volumes[i].Name] = &spec.Volumes[i]
	}
	if ss, ok := m.obj.(*appsv1.StatefulSet); ok {
		for _, pvc := range ss.Spec.VolumeClaimTemplates {
			volumes[pvc.Name] = &corev1.Volume{Name: pvc.Name}
		}
	}
	userProvided := func(name string) bool {
		return regexp.MustCompile(`(?m)^#.*user-provided Secret ` + regexp.QuoteMeta(name) + `\b`).MatchString(text)
	}
	checkSecret := func(ctx, name string) {
		if !secrets[name] && !userProvided(name) {
			t.Errorf("%s: %s references Secret %s, which is neither a manifest under deploy/kubernetes nor documented in %s as `# user-provided Secret %s`", where, ctx, name, m.file, name)
		}
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil {
			checkSecret("volume "+v.Name, v.Secret.SecretName)
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					checkSecret("volume "+v.Name, s.Secret.Name)
				}
			}
		}
	}
	sc := spec.SecurityContext
	if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
		t.Errorf("%s: the pod must set runAsNonRoot and a fixed non-root runAsUser", where)
	} else if uid != 0 && *sc.RunAsUser != uid {
		t.Errorf("%s: runAsUser %d, but the image's kmsd user is %d (deploy/container/Dockerfile)", where, *sc.RunAsUser, uid)
	}

	// mountsOf maps a container's mount paths to their mounts.
	type mountRef struct {
		c *corev1.Container
		m corev1.VolumeMount
	}
	var mounts []mountRef
	for _, c := range allContainers(spec) {
		cw := where + " container " + c.Name
		env := map[string]bool{}
		for _, e := range c.Env {
			env[e.Name] = true
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
				checkSecret("env "+e.Name, e.ValueFrom.SecretKeyRef.Name)
			}
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil {
				ref := e.ValueFrom.ConfigMapKeyRef
				cm := configMaps[ref.Name]
				if cm == nil {
					t.Errorf("%s: env %s: ConfigMap %s is not a manifest under deploy/kubernetes", cw, e.Name, ref.Name)
				} else if _, ok := cm.Data[ref.Key]; !ok {
					t.Errorf("%s: env %s: ConfigMap %s has no key %s", cw, e.Name, ref.Name, ref.Key)
				}
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				checkSecret("envFrom", ef.SecretRef.Name)
			}
		}
		for _, vm := range c.VolumeMounts {
			if volumes[vm.Name] == nil {
				t.Errorf("%s: volumeMount %s has no volume", cw, vm.Name)
			}
			mounts = append(mounts, mountRef{c, vm})
		}
		for _, a := range append(slices.Clone(c.Command), c.Args...) {
			for _, v := range k8sVarRE.FindAllStringSubmatch(a, -1) {
				if !env[v[1]] {
					t.Errorf("%s: $(%s) is not an env var of the container (Kubernetes would pass it literally)", cw, v[1])
				}
			}
			if len(c.Command) > 0 && strings.HasSuffix(c.Command[0], "sh") {
				for _, v := range shVarRE.FindAllStringSubmatch(a, -1) {
					if !env[v[1]] {
						t.Errorf("%s: the script reads ${%s}, which is not an env var of the container", cw, v[1])
					}
				}
			}
		}
		csc := c.SecurityContext
		if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
			csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
			csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") {
			t.Errorf("%s: needs allowPrivilegeEscalation false, readOnlyRootFilesystem true and capabilities drop ALL", cw)
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() || c.Resources.Requests.Cpu().IsZero() {
			t.Errorf("%s: needs cpu and memory requests and a memory limit", cw)
		}
	}

	// holder returns the mount of c that holds path (the longest prefix).
	holder := func(c *corev1.Container, p string) (corev1.VolumeMount, bool) {
		var best corev1.VolumeMount
		ok := false
		for _, vm := range c.VolumeMounts {
			mp := strings.TrimRight(vm.MountPath, "/")
			if (p == mp || strings.HasPrefix(p, mp+"/")) && len(mp) >= len(best.MountPath) {
				best, ok = vm, true
			}
		}
		return best, ok
	}

	var kmsdC *corev1.Container
	var dataDir string
	for _, c := range allContainers(spec) {
		cw := where + " container " + c.Name
		for _, inv := range kmsdInvocations(c) {
			switch inv.sub {
			case "serve":
				if !checkFlags(t, cw+": kmsd serve", newServeFlags(&serveConfig{}, io.Discard), inv.args) {
					// keep checking what can be checked
				}
				if found {
					t.Errorf("%s: more than one kmsd serve in one pod", cw)
				}
				found, kmsdC = true, c
				node.flags = flagValues(inv.args)
				listen := node.flags["listen"]
				if listen == "" {
					listen = "127.0.0.1:4599"
				}
				node.listenHost, _, _ = net.SplitHostPort(listen)
				node.listenPort = port(t, cw+": --listen", listen)
				if a, ok := node.flags["cluster-addr"]; ok {
					node.raftPort = port(t, cw+": --cluster-addr", a)
				}
				dataDir = node.flags["data-dir"]
				if !path.IsAbs(dataDir) {
					t.Errorf("%s: --data-dir %q must be an absolute path on a volume", cw, dataDir)
				}
			case "healthcheck":
				checkFlags(t, cw+": kmsd healthcheck", newHealthcheckFlags(&healthcheckConfig{}, io.Discard), inv.args)
			default:
				t.Errorf("%s: kmsd %s is not a subcommand the deploy checks know", cw, inv.sub)
			}
		}
	}
	if !found {
		return node, false
	}
	cw := where + " container " + kmsdC.Name

	// The data dir is on a writable volume (the root filesystem is read-only).
	if vm, ok := holder(kmsdC, dataDir); !ok || vm.ReadOnly {
		t.Errorf("%s: --data-dir %s is not on a writable volumeMount", cw, dataDir)
	}
	// URLs a script builds (join, api-advertise, probes of peers) are on
	// the API port.
	for _, a := range kmsdC.Args {
		for _, m := range scriptURLRE.FindAllStringSubmatch(a, -1) {
			if m[1] != strconv.Itoa(node.listenPort) {
				t.Errorf("%s: the script's URL %s is not on the --listen port %d", cw, m[0], node.listenPort)
			}
		}
	}
	// Files kmsd reads are on mounts.
	for _, f := range []string{"join-credentials", "cluster-tls-cert", "cluster-tls-key", "cluster-tls-ca", "pkcs11-pin-file"} {
		if p, ok := node.flags[f]; ok {
			if _, on := holder(kmsdC, p); !on {
				t.Errorf("%s: --%s %s is on no volumeMount", cw, f, p)
			}
		}
	}
	// The HSM token and PIN (DATA/hsm) are on a volume no other container mounts.
	if hsm, ok := holder(kmsdC, dataDir+"/hsm"); ok {
		for _, mr := range mounts {
			if mr.c != kmsdC && mr.m.Name == hsm.Name {
				t.Errorf("%s: container %s mounts volume %s, which holds kmsd's HSM token and PIN", where, mr.c.Name, hsm.Name)
			}
		}
	}

	// Ports: every containerPort is the API or the raft port.
	named := map[string]int{}
	for _, p := range kmsdC.Ports {
		named[p.Name] = int(p.ContainerPort)
		if int(p.ContainerPort) != node.listenPort && int(p.ContainerPort) != node.raftPort {
			t.Errorf("%s: containerPort %s %d is neither --listen (%d) nor --cluster-addr (%d)", cw, p.Name, p.ContainerPort, node.listenPort, node.raftPort)
		}
	}
	if node.raftPort != 0 && named["raft"] != node.raftPort {
		t.Errorf("%s: containerPort raft is %d, --cluster-addr port %d", cw, named["raft"], node.raftPort)
	}
	if !isLoopback(node.listenHost) && named["api"] != node.listenPort {
		t.Errorf("%s: containerPort api is %d, --listen port %d", cw, named["api"], node.listenPort)
	}

	// Probes: /healthz for liveness (and startup), /readyz for readiness,
	// on the listen port.
	checkProbe := func(kind string, p *corev1.Probe, wantPaths ...string) {
		if p == nil {
			if kind != "startup" {
				t.Errorf("%s: no %s probe", cw, kind)
			}
			return
		}
		switch {
		case p.HTTPGet != nil:
			if !slices.Contains(wantPaths, p.HTTPGet.Path) {
				t.Errorf("%s: %s probe path %s, want %v", cw, kind, p.HTTPGet.Path, wantPaths)
			}
			pp := p.HTTPGet.Port
			n := pp.IntValue()
			if pp.Type == intstr.String {
				n = named[pp.StrVal]
			}
			if n != node.listenPort {
				t.Errorf("%s: %s probe port %s is not the --listen port %d", cw, kind, pp.String(), node.listenPort)
			}
			if isLoopback(node.listenHost) {
				t.Errorf("%s: %s probe uses httpGet, which dials the pod IP, but kmsd listens on %s only", cw, kind, node.listenHost)
			}
		case p.Exec != nil:
			cmd := p.Exec.Command
			if len(cmd) < 2 || !strings.HasSuffix(cmd[0], "kmsd") || cmd[1] != "healthcheck" {
				t.Errorf("%s: %s probe %v is not `kmsd healthcheck`", cw, kind, cmd)
				return
			}
			var hc healthcheckConfig
			fs := newHealthcheckFlags(&hc, io.Discard)
			if err := fs.Parse(cmd[2:]); err != nil {
				t.Errorf("%s: %s probe: %v", cw, kind, err)
				return
			}
			got := "/healthz"
			if hc.ready {
				got = "/readyz"
			}
			if !slices.Contains(wantPaths, got) {
				t.Errorf("%s: %s probe checks %s, want %v", cw, kind, got, wantPaths)
			}
			u, err := url.Parse(hc.url)
			if err != nil || port(t, cw, u.Host) != node.listenPort {
				t.Errorf("%s: %s probe URL %s is not on the --listen port %d", cw, kind, hc.url, node.listenPort)
			}
		default:
			t.Errorf("%s: %s probe is neither httpGet nor kmsd healthcheck", cw, kind)
		}
	}
	checkProbe("liveness", kmsdC.LivenessProbe, "/healthz")
	checkProbe("readiness", kmsdC.ReadinessProbe, "/readyz")
	checkProbe("startup", kmsdC.StartupProbe, "/healthz", "/readyz")

	// Other containers of the pod reach kmsd on the listen port and read the
	// credentials file kmsd writes, through a volume of kmsd's data dir.
	for _, c := range allContainers(spec) {
		if c == kmsdC {
			continue
		}
		for _, e := range c.Env {
			switch e.Name {
			case "AWS_ENDPOINT_URL_KMS":
				u, err := url.Parse(e.Value)
				if err != nil || port(t, where, u.Host) != node.listenPort {
					t.Errorf("%s: container %s: AWS_ENDPOINT_URL_KMS %s is not kmsd's --listen port %d", where, c.Name, e.Value, node.listenPort)
				}
			case "AWS_SHARED_CREDENTIALS_FILE":
				kv, ok1 := holder(kmsdC, dataDir+"/credentials")
				av, ok2 := holder(c, e.Value)
				if !ok1 || !ok2 || kv.Name != av.Name ||
					path.Join(strings.TrimPrefix(dataDir+"/credentials", kv.MountPath)) != path.Join(strings.TrimPrefix(e.Value, av.MountPath)) {
					t.Errorf("%s: container %s: AWS_SHARED_CREDENTIALS_FILE %s is not kmsd's %s/credentials on a shared volume", where, c.Name, e.Value, dataDir)
				}
			}
		}
	}
	return node, true
}

func isLoopback(host string) bool {
	ip := net.ParseIP(host)
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}

// checkCluster checks the objects around a clustered StatefulSet: its
// Services, PodDisruptionBudget, NetworkPolicy and the bootstrap/join wiring.
func checkCluster(t *testing.T, all []manifest, nodes map[string]kmsdNode) {
	t.Helper()
	byKind := map[string][]manifest{}
	for _, m := range all {
		byKind[m.kind] = append(byKind[m.kind], m)
	}
	for _, sm := range byKind["StatefulSet"] {
		ss := sm.obj.(*appsv1.StatefulSet)
		node, ok := nodes[ss.Name]
		where := sm.file + ": StatefulSet " + ss.Name
		if !ok {
			continue
		}
		labels := ss.Spec.Template.Labels
		selects := func(sel map[string]string) bool {
			if len(sel) == 0 {
				return false
			}
			for k, v := range sel {
				if labels[k] != v {
					return false
				}
			}
			return true
		}
		for _, f := range append(slices.Clone(clusterFlags), "node-id") {
			if _, ok := node.flags[f]; !ok {
				t.Errorf("%s: kmsd serve needs --%s in a cluster", where, f)
			}
		}
		if isLoopback(node.listenHost) {
			t.Errorf("%s: --listen on loopback: peers and clients cannot reach it", where)
		}
		if adv := node.flags["cluster-advertise"]; adv != "" {
			h, _, _ := net.SplitHostPort(adv)
			if port(t, where+": --cluster-advertise", adv) != node.raftPort || !strings.Contains(h, "."+ss.Spec.ServiceName+".") {
				t.Errorf("%s: --cluster-advertise %s must be the pod's name under Service %s on the raft port %d", where, adv, ss.Spec.ServiceName, node.raftPort)
			}
		}
		if h, _, _ := net.SplitHostPort(node.flags["listen"]); h == "" || net.ParseIP(h) != nil && net.ParseIP(h).IsUnspecified() {
			// The API URL peers forward to defaults to http://<listen>.
			// Not url.Parse: the host holds shell variables.
			h, p, err := net.SplitHostPort(strings.TrimPrefix(node.flags["api-advertise"], "http://"))
			if err != nil || !strings.Contains(h, "."+ss.Spec.ServiceName+".") || p != strconv.Itoa(node.listenPort) {
				t.Errorf("%s: --listen %s is not dialable: --api-advertise %q must be the pod's name under Service %s on port %d",
					where, node.flags["listen"], node.flags["api-advertise"], ss.Spec.ServiceName, node.listenPort)
			}
		}
		if j := node.flags["join"]; j != "" {
			for _, u := range strings.Split(j, ",") {
				_, p, err := net.SplitHostPort(strings.TrimPrefix(u, "http://"))
				if strings.Contains(u, "${join}") {
					continue // the script builds the list; checkPod checks its URLs
				}
				if err != nil || p != strconv.Itoa(node.listenPort) {
					t.Errorf("%s: --join URL %s is not on the API port %d", where, u, node.listenPort)
				}
			}
		}
		if ss.Spec.Replicas == nil || *ss.Spec.Replicas < 3 {
			t.Errorf("%s: a cluster needs at least 3 replicas", where)
		}
		if len(ss.Spec.VolumeClaimTemplates) == 0 {
			t.Errorf("%s: no volumeClaimTemplates for the data dir", where)
		}
		if a := ss.Spec.Template.Spec.Affinity; a == nil || a.PodAntiAffinity == nil ||
			len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution)+len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 {
			t.Errorf("%s: no pod anti-affinity", where)
		}

		var headless, client bool
		for _, m := range byKind["Service"] {
			svc := m.obj.(*corev1.Service)
			if !selects(svc.Spec.Selector) {
				continue
			}
			for _, p := range svc.Spec.Ports {
				tp := p.TargetPort.IntValue()
				if p.TargetPort.Type == intstr.String {
					for _, cp := range ss.Spec.Template.Spec.Containers[0].Ports {
						if cp.Name == p.TargetPort.StrVal {
							tp = int(cp.ContainerPort)
						}
					}
				}
				if tp == 0 {
					tp = int(p.Port)
				}
				if tp != node.listenPort && tp != node.raftPort {
					t.Errorf("%s: Service %s port %s targets %d, neither the API (%d) nor raft (%d) port", m.file, svc.Name, p.Name, tp, node.listenPort, node.raftPort)
				}
			}
			if svc.Name == ss.Spec.ServiceName {
				headless = true
				if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
					t.Errorf("%s: Service %s (the StatefulSet's serviceName) must be headless and publish not-ready addresses", m.file, svc.Name)
				}
			} else {
				client = true
			}
		}
		if !headless || !client {
			t.Errorf("%s: want a headless Service %s and a client Service selecting the pods (found headless %v, client %v)", where, ss.Spec.ServiceName, headless, client)
		}

		pdbs := 0
		for _, m := range byKind["PodDisruptionBudget"] {
			pdb := m.obj.(*policyv1.PodDisruptionBudget)
			if pdb.Spec.Selector == nil || !selects(pdb.Spec.Selector.MatchLabels) {
				continue
			}
			pdbs++
			if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
				t.Errorf("%s: PodDisruptionBudget %s: maxUnavailable must be 1", m.file, pdb.Name)
			}
		}
		if pdbs != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select the pods, want 1", where, pdbs)
		}

		nps := 0
		for _, m := range byKind["NetworkPolicy"] {
			np := m.obj.(*networkingv1.NetworkPolicy)
			if !selects(np.Spec.PodSelector.MatchLabels) {
				continue
			}
			nps++
			for _, rule := range np.Spec.Ingress {
				peersOnly := len(rule.From) > 0
				for _, f := range rule.From {
					if f.PodSelector == nil || !selects(f.PodSelector.MatchLabels) || f.NamespaceSelector != nil || f.IPBlock != nil {
						peersOnly = false
					}
				}
				if len(rule.Ports) == 0 {
					t.Errorf("%s: NetworkPolicy %s: an ingress rule without ports", m.file, np.Name)
				}
				for _, p := range rule.Ports {
					n := p.Port.IntValue()
					switch {
					case n == node.raftPort && !peersOnly:
						t.Errorf("%s: NetworkPolicy %s lets pods other than kmsd reach the raft port %d", m.file, np.Name, n)
					case n != node.listenPort && n != node.raftPort:
						t.Errorf("%s: NetworkPolicy %s opens port %d, which kmsd does not serve", m.file, np.Name, n)
					}
				}
			}
		}
		if nps == 0 {
			t.Errorf("%s: no NetworkPolicy selects the pods", where)
		}
	}
}

// TestEncryptionConfiguration checks that deploy/kubernetes/encryption-config.yaml
// is a valid apiserver EncryptionConfiguration that dials the socket
// `kmsd k8s-kms-plugin` serves by default.
func TestEncryptionConfiguration(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(deployDir, "kubernetes", "encryption-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ec apiserverv1.EncryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &ec); err != nil {
		t.Fatalf("strict decode: %v", err)
	}
	if ec.APIVersion != "apiserver.config.k8s.io/v1" || ec.Kind != "EncryptionConfiguration" || len(ec.Resources) == 0 || len(ec.Resources[0].Providers) == 0 {
		t.Fatalf("not an EncryptionConfiguration with providers: %+v", ec)
	}
	kms := ec.Resources[0].Providers[0].KMS
	var c pluginConfig
	newPluginFlags(&c, io.Discard)
	switch {
	case !slices.Contains(ec.Resources[0].Resources, "secrets"):
		t.Errorf("resources %v: want secrets", ec.Resources[0].Resources)
	case kms == nil || kms.APIVersion != "v2" || kms.Name != "kmsd":
		t.Errorf("first provider %+v: want kms apiVersion v2 name kmsd", ec.Resources[0].Providers[0])
	case kms.Endpoint != "unix://"+c.socket:
		t.Errorf("endpoint %s, but kmsd k8s-kms-plugin serves unix://%s", kms.Endpoint, c.socket)
	case kms.Timeout == nil || kms.Timeout.Duration <= 0:
		t.Errorf("timeout %v", kms.Timeout)
	}
}

// unit is a parsed systemd unit: section -> key -> values in order.
type unit map[string]map[string][]string

func parseUnit(t *testing.T, file string) unit {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	u := unit{}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			u[section] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok || section == "" {
				t.Fatalf("%s:%d: not a key=value line in a section: %q", file, n, line)
			}
			u[section][strings.TrimSpace(k)] = append(u[section][strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return u
}

func (u unit) get(section, key string) string {
	v := u[section][key]
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// parseEnvFile reads KEY=VALUE lines, as systemd's EnvironmentFile does
// for the simple cases (no quotes in deploy/systemd/kmsd.env).
func parseEnvFile(t *testing.T, file string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s: %q is not KEY=VALUE", file, line)
			continue
		}
		env[k] = v
	}
	return env
}

// expandExec expands an ExecStart line as systemd does: ${VAR} is one word,
// $VAR splits on blanks.
func expandExec(t *testing.T, line string, env map[string]string) []string {
	t.Helper()
	var out []string
	for _, w := range strings.Fields(line) {
		switch {
		case strings.HasPrefix(w, "${") && strings.HasSuffix(w, "}"):
			v, ok := env[w[2:len(w)-1]]
			if !ok {
				t.Errorf("ExecStart uses %s, which neither the unit nor the env file sets", w)
			}
			out = append(out, v)
		case strings.HasPrefix(w, "$"):
			v, ok := env[w[1:]]
			if !ok {
				t.Errorf("ExecStart uses %s, which neither the unit nor the env file sets", w)
			}
			out = append(out, strings.Fields(v)...)
		default:
			out = append(out, w)
		}
	}
	return out
}

// TestSystemdUnits checks the units' hardening and their ExecStart flags
// against kmsd's flag sets (with the example env file), and runs
// systemd-analyze verify when it is installed.
func TestSystemdUnits(t *testing.T) {
	dir := filepath.Join(deployDir, "systemd")
	env := parseEnvFile(t, filepath.Join(dir, "kmsd.env"))

	u := parseUnit(t, filepath.Join(dir, "kmsd.service"))
	for k, want := range map[string]string{
		"User": "kmsd", "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/kmsd",
		"PrivateTmp": "yes", "ProtectHome": "yes", "CapabilityBoundingSet": "", "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
		"EnvironmentFile": "-/etc/kmsd/kmsd.env",
	} {
		if got, ok := u["Service"][k]; !ok || got[len(got)-1] != want {
			t.Errorf("kmsd.service: %s=%v, want %q", k, got, want)
		}
	}
	if !slices.Contains(u["Service"]["SystemCallFilter"], "@system-service") {
		t.Errorf("kmsd.service: SystemCallFilter %v lacks @system-service", u["Service"]["SystemCallFilter"])
	}
	argv := expandExec(t, u.get("Service", "ExecStart"), env)
	if len(argv) < 2 || argv[0] != "/usr/local/bin/kmsd" || argv[1] != "serve" {
		t.Fatalf("kmsd.service: ExecStart %v is not /usr/local/bin/kmsd serve", argv)
	}
	var c serveConfig
	if checkFlags(t, "kmsd.service ExecStart", newServeFlags(&c, io.Discard), argv[2:]) && c.dataDir != u.get("Service", "ReadWritePaths") {
		t.Errorf("kmsd.service: --data-dir %s is not the writable path %s", c.dataDir, u.get("Service", "ReadWritePaths"))
	}
	// Every commented alternative in the env file parses too.
	data, _ := os.ReadFile(filepath.Join(dir, "kmsd.env"))
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "#KMSD_OPTS="); ok {
			checkFlags(t, "kmsd.env (commented) KMSD_OPTS", newServeFlags(&serveConfig{}, io.Discard), strings.Fields(rest))
		}
	}

	pu := parseUnit(t, filepath.Join(dir, "kmsd-k8s-kms-plugin.service"))
	penv := map[string]string{}
	for _, e := range pu["Service"]["Environment"] {
		k, v, _ := strings.Cut(e, "=")
		penv[k] = v
	}
	for k, v := range env {
		penv[k] = v
	}
	argv = expandExec(t, pu.get("Service", "ExecStart"), penv)
	if len(argv) < 2 || argv[0] != "/usr/local/bin/kmsd" || argv[1] != "k8s-kms-plugin" {
		t.Fatalf("kmsd-k8s-kms-plugin.service: ExecStart %v is not /usr/local/bin/kmsd k8s-kms-plugin", argv)
	}
	var pc pluginConfig
	if checkFlags(t, "kmsd-k8s-kms-plugin.service ExecStart", newPluginFlags(&pc, io.Discard), argv[2:]) {
		var def pluginConfig
		newPluginFlags(&def, io.Discard)
		norm := func(p string) string { return strings.Replace(p, "/var/run/", "/run/", 1) }
		if norm(pc.socket) != norm(def.socket) {
			t.Errorf("kmsd-k8s-kms-plugin.service: --socket %s, but encryption-config.yaml dials the default %s", pc.socket, def.socket)
		}
		if "/run/"+pu.get("Service", "RuntimeDirectory") != path.Dir(norm(pc.socket)) {
			t.Errorf("kmsd-k8s-kms-plugin.service: RuntimeDirectory=%s does not hold --socket %s", pu.get("Service", "RuntimeDirectory"), pc.socket)
		}
	}

	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not installed: units not verified")
		return
	}
	// verify wants ExecStart to exist: point it at an executable, this test.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	var units []string
	for _, name := range []string{"kmsd.service", "kmsd-k8s-kms-plugin.service"} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(tmp, name)
		os.WriteFile(p, bytes.ReplaceAll(data, []byte("/usr/local/bin/kmsd"), []byte(self)), 0o644)
		units = append(units, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, units...)...).CombinedOutput()
	if err != nil {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys are only warnings; they are mistakes all the same.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, ".service") {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
}

var uidRE = regexp.MustCompile(`--uid (\d+)`)

// dockerfileUID returns the uid of the image's kmsd user, after checking
// the Dockerfile's final stage: non-root USER, HEALTHCHECK through `kmsd
// healthcheck`, and a CMD whose serve flags exist.
func dockerfileUID(t *testing.T) int64 {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(deployDir, "container", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	final := text[strings.LastIndex(text, "\nFROM "):]
	var user, health, cmd, entry string
	for _, line := range strings.Split(final, "\n") {
		switch {
		case strings.HasPrefix(line, "USER "):
			user = strings.TrimPrefix(line, "USER ")
		case strings.HasPrefix(line, "HEALTHCHECK "):
			health = line
		case strings.HasPrefix(line, "CMD "):
			cmd = strings.TrimPrefix(line, "CMD ")
		case strings.HasPrefix(line, "ENTRYPOINT "):
			entry = strings.TrimPrefix(line, "ENTRYPOINT ")
		}
	}
	m := uidRE.FindStringSubmatch(final)
	if m == nil {
		t.Fatal("Dockerfile: the final stage creates no user with --uid")
	}
	uid, _ := strconv.ParseInt(m[1], 10, 64)
	if u, _, _ := strings.Cut(user, ":"); u != m[1] {
		t.Errorf("Dockerfile: USER %q is not the kmsd user's uid %s", user, m[1])
	}
	var hc []string
	if i := strings.Index(health, "CMD "); i < 0 || yaml.Unmarshal([]byte(health[i+4:]), &hc) != nil || len(hc) < 2 || hc[1] != "healthcheck" {
		t.Errorf("Dockerfile: HEALTHCHECK %q is not CMD [\"/usr/local/bin/kmsd\", \"healthcheck\", ...]", health)
	} else {
		checkFlags(t, "Dockerfile HEALTHCHECK", newHealthcheckFlags(&healthcheckConfig{}, io.Discard), hc[2:])
	}
	var ep, args []string
	if yaml.Unmarshal([]byte(entry), &ep) != nil || yaml.Unmarshal([]byte(cmd), &args) != nil || len(ep) != 1 || len(args) < 1 || args[0] != "serve" {
		t.Errorf("Dockerfile: ENTRYPOINT %s CMD %s: want [kmsd] and [serve, flags...]", entry, cmd)
	} else {
		checkFlags(t, "Dockerfile CMD", newServeFlags(&serveConfig{}, io.Discard), args[1:])
	}
	return uid
}

// TestDeployFlagsLanded reports the cluster flags the StatefulSet uses that
// kmsd serve does not define yet, in one line.
func TestDeployFlagsLanded(t *testing.T) {
	fs := newServeFlags(&serveConfig{}, io.Discard)
	var missing []string
	for _, f := range clusterFlags {
		if fs.Lookup(f) == nil {
			missing = append(missing, "--"+f)
		}
	}
	if len(missing) > 0 {
		t.Errorf("deploy/kubernetes/overlays/cluster uses %s, which kmsd serve does not define yet (issue #4)", fmt.Sprint(missing))
	}
}

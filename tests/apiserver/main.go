// A real Kubernetes API server for custom resources, for tests and the demo.
//
// It is k8s.io/apiextensions-apiserver (the part of every cluster that serves
// CRDs and custom resources: server-side apply, managedFields, OpenAPI and CEL
// validation, watch, dry-run) run standalone. scripts/test-cluster.sh builds
// it in GOPATH mode from Debian's Go source packages and runs it; see
// DESIGN.md, "Tests against a real API server".
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/version"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/cache"
	"k8s.io/component-base/cli"

	"github.com/spf13/cobra"
)

// Standalone there is no core API. Some clients' discovery fails without
// /api (kube-rs's Discovery::run wants at least one version listed), so
// serve a v1 with no resources; to clients that ask for aggregated
// discovery (kubectl, kube-rs's run_aggregated) an empty list, so that
// kubectl does not call the empty v1 a failed group.
const (
	legacyVersions   = `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[]}`
	legacyResources  = `{"kind":"APIResourceList","apiVersion":"v1","groupVersion":"v1","resources":[]}`
	legacyAggregated = `{"kind":"APIGroupDiscoveryList","apiVersion":"apidiscovery.k8s.io/v2","metadata":{},"items":[]}`
	aggregatedType   = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
)

func main() {
	ctx := genericapiserver.SetupSignalContext()
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	cmd := &cobra.Command{
		Use:   "test-apiserver",
		Short: "A Kubernetes API server for custom resources (tests of kubectl-gitops)",
		PersistentPreRunE: func(*cobra.Command, []string) error {
			return o.ServerRunOptions.ComponentGlobalsRegistry.Set()
		},
		RunE: func(c *cobra.Command, _ []string) error {
			if err := o.Complete(); err != nil {
				return err
			}
			if err := o.Validate(); err != nil {
				return err
			}
			return run(c, o)
		},
	}
	cmd.SetContext(ctx)
	o.AddFlags(cmd.Flags())
	os.Exit(cli.Run(cmd))
}

func run(c *cobra.Command, o *options.CustomResourceDefinitionsServerOptions) error {
	config, err := o.Config()
	if err != nil {
		return err
	}
	// OpenAPI v2 beside the v3 that Config() sets: kubectl's validation and
	// `kubectl explain` read it.
	config.GenericConfig.OpenAPIConfig = genericapiserver.DefaultOpenAPIConfig(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme))
	config.GenericConfig.OpenAPIConfig.Info.Title = "kubectl-gitops test API server"

	config.GenericConfig.BuildHandlerChainFunc = func(api http.Handler, c *genericapiserver.Config) http.Handler {
		return genericapiserver.DefaultBuildHandlerChain(workEndsFirst(api), c)
	}

	completed := config.Complete()
	// The library turns discovery off because in kube-apiserver another
	// server in the chain serves it; standalone, kubectl fails without it
	// ("couldn't get current server API group list").
	completed.GenericConfig.EnableDiscovery = true

	server, err := completed.New(genericapiserver.NewEmptyDelegate())
	if err != nil {
		return fmt.Errorf("creating the server: %w", err)
	}
	if err := listCRDGroups(server); err != nil {
		return fmt.Errorf("watching CRDs for discovery: %w", err)
	}
	mux := server.GenericAPIServer.Handler.NonGoRestfulMux
	mux.HandleFunc("/api", func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.Header.Get("Accept"), aggregatedType) {
			writeJSON(w, aggregatedType, legacyAggregated)
		} else {
			writeJSON(w, "application/json", legacyVersions)
		}
	})
	mux.HandleFunc("/api/v1", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, "application/json", legacyResources)
	})
	return server.GenericAPIServer.PrepareRun().RunWithContext(c.Context())
}

// listCRDGroups keeps the groups of established CRDs in the unaggregated
// /apis list. In a cluster kube-aggregator lists them there (from the
// APIServices that crd-autoregistration makes); standalone only the
// aggregated form has them, and clients of the older form (kube-rs's
// Discovery::run) would see no custom resource at all.
func listCRDGroups(s *apiserver.CustomResourceDefinitions) error {
	crds := s.Informers.Apiextensions().V1().CustomResourceDefinitions()
	groups := s.GenericAPIServer.DiscoveryGroupManager
	var mu sync.Mutex
	listed := map[string]bool{}
	update := func() {
		mu.Lock()
		defer mu.Unlock()
		all, err := crds.Lister().List(labels.Everything())
		if err != nil {
			utilruntime.HandleError(err)
			return
		}
		served := map[string][]metav1.GroupVersionForDiscovery{}
		seen := map[string]bool{}
		for _, crd := range all {
			if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				continue
			}
			for _, v := range crd.Spec.Versions {
				gv := crd.Spec.Group + "/" + v.Name
				if v.Served && !seen[gv] {
					seen[gv] = true
					served[crd.Spec.Group] = append(served[crd.Spec.Group],
						metav1.GroupVersionForDiscovery{GroupVersion: gv, Version: v.Name})
				}
			}
		}
		for name, versions := range served {
			sort.Slice(versions, func(i, j int) bool {
				return version.CompareKubeAwareVersionStrings(versions[i].Version, versions[j].Version) > 0
			})
			groups.AddGroup(metav1.APIGroup{Name: name, Versions: versions, PreferredVersion: versions[0]})
			listed[name] = true
		}
		for name := range listed {
			if _, ok := served[name]; !ok {
				groups.RemoveGroup(name)
				delete(listed, name)
			}
		}
	}
	_, err := crds.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { update() },
		UpdateFunc: func(any, any) { update() },
		DeleteFunc: func(any) { update() },
	})
	return err
}

func writeJSON(w http.ResponseWriter, contentType, body string) {
	w.Header().Set("Content-Type", contentType)
	_, _ = w.Write([]byte(body))
}

// workEndsFirst ends a request's work (its etcd calls) one second before the
// deadline that the server's timeout filter enforces. Both watch the same
// deadline upstream, and when etcd is down they race: the client gets either
// the timeout filter's 504 or, when the handler has begun its own error
// response, an aborted connection. Tests of etcd outages need one answer: a
// Status with a 5xx code.
func workEndsFirst(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if deadline, ok := r.Context().Deadline(); ok && time.Until(deadline) > 2*time.Second {
			ctx, cancel := context.WithDeadline(r.Context(), deadline.Add(-time.Second))
			defer cancel()
			r = r.WithContext(ctx)
		}
		h.ServeHTTP(w, r)
	})
}

// Package cluster reads one namespace's objects from the Kubernetes API for
// the lint: one List per kind, no watch, no loop, a deadline on every call,
// and a client rate limit, so linting a namespace costs the API server five
// requests however often CI runs it. It knows client-go and nothing of the
// rules.
package cluster

import (
	"context"
	"fmt"
	"time"

	istionetv1 "istio.io/client-go/pkg/clientset/versioned/typed/networking/v1"
	istionetv1beta1 "istio.io/client-go/pkg/clientset/versioned/typed/networking/v1beta1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshready/meshready/lint"
)

// Client-side rate limit: a lint makes five calls; these only bound a bug.
const (
	QPS   = 5
	Burst = 10
)

// RESTConfig is the API server's address and credentials: the kubeconfig
// file (and context) when given, else the pod's service account.
func RESTConfig(kubeconfig, context string) (*rest.Config, error) {
	if kubeconfig == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("--namespace without --kubeconfig needs to run in a pod (in-cluster config): %v", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: context},
	).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig=%s: %v", kubeconfig, err)
	}
	return cfg, nil
}

// Read lists the namespace's Services, Deployments, Pods, DestinationRules
// and VirtualServices, each call bounded by timeout. Istio's objects are read
// as networking.istio.io/v1, or v1beta1 from an Istio older than 1.22 (a
// 404 on v1); a cluster without Istio's CRDs has none of them, which is not
// an error (the VirtualService rules then have nothing to check).
func Read(ctx context.Context, cfg *rest.Config, ns string, timeout time.Duration) (*lint.Set, error) {
	cfg = clientConfig(cfg, timeout)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	set := &lint.Set{}
	list := func(what string, call func(context.Context) error) error {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		if err := call(cctx); err != nil {
			return fmt.Errorf("list %s in namespace %s: %w", what, ns, err)
		}
		return nil
	}
	opts := metav1.ListOptions{}
	if err := list("services", func(ctx context.Context) error {
		l, err := kube.CoreV1().Services(ns).List(ctx, opts)
		if err == nil {
			for i := range l.Items {
				set.AddService(&l.Items[i])
			}
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := list("deployments", func(ctx context.Context) error {
		l, err := kube.AppsV1().Deployments(ns).List(ctx, opts)
		if err == nil {
			for i := range l.Items {
				set.AddDeployment(&l.Items[i])
			}
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := list("pods", func(ctx context.Context) error {
		l, err := kube.CoreV1().Pods(ns).List(ctx, opts)
		if err == nil {
			for i := range l.Items {
				set.Pods = append(set.Pods, &l.Items[i])
			}
			set.PodsKnown = true
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := readIstio(cfg, ns, opts, set, list); err != nil {
		return nil, err
	}
	return set, nil
}

// clientConfig is cfg (copied) with the rate limit and the HTTP client's own
// deadline, a bound under the per-call contexts.
func clientConfig(cfg *rest.Config, timeout time.Duration) *rest.Config {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = QPS, Burst
	cfg.Timeout = timeout
	return cfg
}

type lister func(what string, call func(context.Context) error) error

func readIstio(cfg *rest.Config, ns string, opts metav1.ListOptions, set *lint.Set, list lister) error {
	v1, err := istionetv1.NewForConfig(cfg)
	if err != nil {
		return err
	}
	err = list("destinationrules.networking.istio.io/v1", func(ctx context.Context) error {
		l, err := v1.DestinationRules(ns).List(ctx, opts)
		if err == nil {
			for _, dr := range l.Items {
				set.AddDestinationRule("networking.istio.io/v1", dr.ObjectMeta, &dr.Spec)
			}
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return readIstioV1beta1(cfg, ns, opts, set, list)
	}
	if err != nil {
		return err
	}
	return list("virtualservices.networking.istio.io/v1", func(ctx context.Context) error {
		l, err := v1.VirtualServices(ns).List(ctx, opts)
		if err == nil {
			for _, vs := range l.Items {
				set.AddVirtualService("networking.istio.io/v1", vs.ObjectMeta, &vs.Spec)
			}
		}
		return err
	})
}

// readIstioV1beta1 is for Istio before 1.22, which serves no v1; an API
// server that has no networking.istio.io at all answers 404 here too, and
// then there is nothing to read.
func readIstioV1beta1(cfg *rest.Config, ns string, opts metav1.ListOptions, set *lint.Set, list lister) error {
	b1, err := istionetv1beta1.NewForConfig(cfg)
	if err != nil {
		return err
	}
	err = list("destinationrules.networking.istio.io/v1beta1", func(ctx context.Context) error {
		l, err := b1.DestinationRules(ns).List(ctx, opts)
		if err == nil {
			for _, dr := range l.Items {
				set.AddDestinationRule("networking.istio.io/v1beta1", dr.ObjectMeta, &dr.Spec)
			}
		}
		return err
	})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return list("virtualservices.networking.istio.io/v1beta1", func(ctx context.Context) error {
		l, err := b1.VirtualServices(ns).List(ctx, opts)
		if err == nil {
			for _, vs := range l.Items {
				set.AddVirtualService("networking.istio.io/v1beta1", vs.ObjectMeta, &vs.Spec)
			}
		}
		return err
	})
}

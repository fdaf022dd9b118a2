package localcluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's certificates, made in Go (no openssl): one CA, the
// apiserver's serving certificate, a client certificate per identity, and
// the service-account signing key.
type pki struct {
	dir      string
	caCert   *x509.Certificate
	caKey    *ecdsa.PrivateKey
	CAFile   string
	CAKey    string
	SAKey    string // private, for the apiserver's signing and the controller-manager
	SAPub    string
	Serving  pair
	Admin    pair // system:masters
	KCM      pair // system:kube-controller-manager
	Sched    pair // system:kube-scheduler
	Istiod   pair // istiod's own identity (system:masters here: istiod's RBAC is not what we test)
	PromUser pair // Prometheus' service discovery
}

type pair struct{ Cert, Key string }

func newPKI(dir string, servingIPs []net.IP) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "meshready-localcluster-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.caKey = key
	if p.CAFile, err = p.writeCert("ca.crt", der); err != nil {
		return nil, err
	}
	if p.CAKey, err = p.writeKey("ca.key", key); err != nil {
		return nil, err
	}

	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if p.SAKey, err = p.writeKey("sa.key", sa); err != nil {
		return nil, err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return nil, err
	}
	p.SAPub = filepath.Join(dir, "sa.pub")
	if err := os.WriteFile(p.SAPub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return nil, err
	}

	if p.Serving, err = p.issue("apiserver", pkix.Name{CommonName: "kube-apiserver"}, true,
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "istiod.istio-system.svc"},
		servingIPs); err != nil {
		return nil, err
	}
	clients := []struct {
		name string
		dst  *pair
		subj pkix.Name
	}{
		{"admin", &p.Admin, pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}},
		{"kube-controller-manager", &p.KCM, pkix.Name{CommonName: "system:kube-controller-manager"}},
		{"kube-scheduler", &p.Sched, pkix.Name{CommonName: "system:kube-scheduler"}},
		{"istiod", &p.Istiod, pkix.Name{CommonName: "istiod", Organization: []string{"system:masters"}}},
		{"prometheus", &p.PromUser, pkix.Name{CommonName: "prometheus", Organization: []string{"system:masters"}}},
	}
	for _, c := range clients {
		if *c.dst, err = p.issue(c.name, c.subj, false, nil, nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

func (p *pki) issue(name string, subj pkix.Name, server bool, dns []string, ips []net.IP) (pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return pair{}, err
	}
	usage := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	if server {
		usage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      subj,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  usage,
		DNSNames:     dns,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		return pair{}, fmt.Errorf("issue %s: %w", name, err)
	}
	var pr pair
	if pr.Cert, err = p.writeCert(name+".crt", der); err != nil {
		return pair{}, err
	}
	if pr.Key, err = p.writeKey(name+".key", key); err != nil {
		return pair{}, err
	}
	return pr, nil
}

func (p *pki) writeCert(name string, der []byte) (string, error) {
	path := filepath.Join(p.dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
}

func (p *pki) writeKey(name string, k *ecdsa.PrivateKey) (string, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.dir, name)
	return path, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

// kubeconfig writes a kubeconfig for one client identity.
func (p *pki) kubeconfig(path, server string, id pair) error {
	s := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: local
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: user
  user:
    client-certificate: %s
    client-key: %s
contexts:
- name: local
  context: {cluster: local, user: user}
current-context: local
`, server, p.CAFile, id.Cert, id.Key)
	return os.WriteFile(path, []byte(s), 0o600)
}

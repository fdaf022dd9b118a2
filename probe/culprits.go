package probe

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/meshready/meshready/envoyadmin"
)

// configDumper is the part of envoyadmin.Client that names culprits; an
// EnvoyAdmin without it (a test fake) gets the counts alone.
type configDumper interface {
	ConfigDump(ctx context.Context, q envoyadmin.ConfigDumpQuery) (envoyadmin.ConfigDump, error)
}

// culpritRecheck bounds how often /config_dump is read while the counts stay
// the same: rendering it costs Envoy's main thread, and a stuck warming
// secret does not need a dump a second to stay named.
const culpritRecheck = 5 * time.Second

// maxCulprits keeps the message one short line.
const maxCulprits = 3

// culprits names what is warming and what Envoy rejected, from its own
// /config_dump (without EDS), when the counters say something is: e.g.
// `warming secret "kubernetes://default"`, `listener "0.0.0.0_8080"
// rejected: …`. "" when the dump cannot be read (too large, old Envoy):
// the counts still say what is wrong. Called with e.configMu held.
func (e *envoyState) culprits(ctx context.Context, f envoyadmin.ReadinessFacts) string {
	cd, ok := e.admin.(configDumper)
	if !ok {
		return ""
	}
	sig := fmt.Sprint(f.WarmingClusters, f.WarmingListeners, f.CDS.UpdateSuccess, f.CDS.UpdateRejected, f.LDS.UpdateSuccess, f.LDS.UpdateRejected)
	if sig == e.culpritSig && time.Since(e.culpritAt) < culpritRecheck {
		return e.culpritMsg
	}
	e.culpritSig, e.culpritAt, e.culpritMsg = sig, time.Now(), ""
	d, err := cd.ConfigDump(ctx, envoyadmin.ConfigDumpQuery{})
	if err != nil {
		return ""
	}
	var warming, rejected []string
	// Secrets first: a listener warms because its secret does.
	for _, kind := range []string{envoyadmin.KindSecrets, envoyadmin.KindClusters, envoyadmin.KindListeners, envoyadmin.KindRoutes, envoyadmin.KindECDS} {
		t, ok := d.Type(kind)
		if !ok {
			continue
		}
		for _, r := range t.Resources {
			name := kindName(kind) + " " + strconv.Quote(r.Name)
			switch {
			case r.Error != "":
				rejected = append(rejected, name+" rejected: "+r.Error)
			case r.Warming:
				warming = append(warming, name)
			}
		}
	}
	var parts []string
	if len(warming) > 0 {
		parts = append(parts, "warming "+list(warming))
	}
	if len(rejected) > 0 {
		parts = append(parts, "Envoy says: "+list(rejected))
	}
	e.culpritMsg = strings.Join(parts, "; ")
	return e.culpritMsg
}

func list(items []string) string {
	if len(items) > maxCulprits {
		return strings.Join(items[:maxCulprits], ", ") + fmt.Sprintf(" and %d more", len(items)-maxCulprits)
	}
	return strings.Join(items, ", ")
}

func kindName(kind string) string {
	switch kind {
	case envoyadmin.KindSecrets:
		return "secret"
	case envoyadmin.KindClusters:
		return "cluster"
	case envoyadmin.KindListeners:
		return "listener"
	case envoyadmin.KindRoutes:
		return "route"
	case envoyadmin.KindECDS:
		return "extension config"
	}
	return kind
}

package kubeletstandin

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// prepareVolumesLocked makes the host directory of every volume the
// stand-in materialises: downwardAPI (and the downwardAPI sources of a
// projected volume) and emptyDir, at kubelet's layout
// <pod dir>/volumes/kubernetes.io~<kind>/<name>. Other kinds (the
// service-account token, configMap, secret) are not materialised.
func (w *podWorker) prepareVolumesLocked() {
	for _, v := range w.pod.Spec.Volumes {
		kind := ""
		switch {
		case v.DownwardAPI != nil:
			kind = "downward-api"
		case v.Projected != nil:
			kind = "projected"
		case v.EmptyDir != nil:
			kind = "empty-dir"
		default:
			continue
		}
		dir := filepath.Join(w.dir, "volumes", "kubernetes.io~"+kind, v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			w.logf("volume %s: %v", v.Name, err)
			continue
		}
		w.volumes[v.Name] = dir
	}
}

// writeDownwardLocked writes every Downward API item that changed, each
// file replaced atomically (rename), in the kubelet's format: labels and
// annotations as `key="value"` lines, sorted, %q-quoted.
func (w *podWorker) writeDownwardLocked() {
	for _, v := range w.pod.Spec.Volumes {
		dir, ok := w.volumes[v.Name]
		if !ok {
			continue
		}
		var items []corev1.DownwardAPIVolumeFile
		mode := int32(0o644)
		switch {
		case v.DownwardAPI != nil:
			items = v.DownwardAPI.Items
			if v.DownwardAPI.DefaultMode != nil {
				mode = *v.DownwardAPI.DefaultMode
			}
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.DownwardAPI != nil {
					items = append(items, s.DownwardAPI.Items...)
				}
			}
			if v.Projected.DefaultMode != nil {
				mode = *v.Projected.DefaultMode
			}
		}
		for _, it := range items {
			if it.FieldRef == nil || strings.Contains(it.Path, "..") {
				continue // resourceFieldRef: not supported
			}
			val, err := fieldValue(w.pod, it.FieldRef.FieldPath, w.ip, w.k.cfg.NodeIP)
			if err != nil {
				w.logf("volume %s item %s: %v", v.Name, it.Path, err)
				continue
			}
			m := mode
			if it.Mode != nil {
				m = *it.Mode
			}
			path := filepath.Join(dir, it.Path)
			if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, []byte(val)) {
				continue
			}
			if err := writeAtomic(path, []byte(val), os.FileMode(m)); err != nil {
				w.logf("volume %s item %s: %v", v.Name, it.Path, err)
			}
		}
	}
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

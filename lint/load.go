package lint

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// StdinName is how findings and errors name standard input ("-f -").
const StdinName = "<stdin>"

// maxManifestBytes bounds one file: manifests are small, and a lint that
// reads a mistaken path (a log, an image) should say so, not eat memory.
const maxManifestBytes = 16 << 20

// manifestExts are the files a directory contributes (as kubectl -f DIR).
var manifestExts = map[string]bool{".yaml": true, ".yml": true, ".json": true}

// Load reads every path ("-" is stdin; a directory contributes its
// .yaml/.yml/.json files, recursively, in name order) into one Set. Objects
// that decode are in the set even when others fail; the error, if any, is
// InputErrors naming every file and line that could not be read.
func Load(paths []string, stdin io.Reader) (*Set, error) {
	set := &Set{}
	var errs InputErrors
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(io.LimitReader(stdin, maxManifestBytes+1))
			if err != nil {
				errs = append(errs, &InputError{File: StdinName, Msg: err.Error()})
				continue
			}
			errs = append(errs, decodeFile(StdinName, data, set)...)
			continue
		}
		files, err := manifestFiles(p)
		if err != nil {
			errs = append(errs, &InputError{File: p, Msg: err.Error()})
			continue
		}
		for _, f := range files {
			data, err := readCapped(f)
			if err != nil {
				errs = append(errs, &InputError{File: f, Msg: err.Error()})
				continue
			}
			errs = append(errs, decodeFile(f, data, set)...)
		}
	}
	errs = append(errs, set.duplicates()...)
	if len(errs) > 0 {
		return set, errs
	}
	return set, nil
}

// duplicates are objects given twice (same kind, namespace and name): the
// cluster would keep one, so rules across objects would judge a set that
// can never exist. Usually two overlays linted together, or a copy left
// behind.
func (s *Set) duplicates() InputErrors {
	var errs InputErrors
	first := map[string]Object{}
	see := func(o Object) {
		if f, dup := first[o.Ref()]; dup {
			errs = append(errs, &InputError{File: o.File, Line: o.Line, Msg: fmt.Sprintf("%s is given twice (first at %s:%d): the cluster keeps one; lint each variant on its own", o.Ref(), f.File, f.Line)})
			return
		}
		first[o.Ref()] = o
	}
	for _, o := range s.Services {
		see(o.Obj)
	}
	for _, o := range s.Deployments {
		see(o.Obj)
	}
	for _, o := range s.DestinationRules {
		see(o.Obj)
	}
	for _, o := range s.VirtualServices {
		see(o.Obj)
	}
	return errs
}

func decodeFile(name string, data []byte, set *Set) InputErrors {
	if len(data) > maxManifestBytes {
		return InputErrors{{File: name, Msg: fmt.Sprintf("larger than %d MiB: not a manifest", maxManifestBytes>>20)}}
	}
	return Decode(name, data, set)
}

func readCapped(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
}

// manifestFiles is path itself when it is a file (whatever its name: the
// user asked for it), or a directory's manifest files.
func manifestFiles(path string) ([]string, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return []string{path}, nil
	}
	var files []string
	err = filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && manifestExts[strings.ToLower(filepath.Ext(p))] {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no .yaml, .yml or .json files in this directory")
	}
	sort.Strings(files)
	return files, nil
}

package lint

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
)

// agentFlag is one flag of cmd/meshready as its source declares it.
type agentFlag struct {
	duration bool
	enum     []string
	def      string
}

// agentFlags reads cmd/meshready's kong structs: each field's env name
// (MESHREADY_ + the field name in upper snake case, as kong derives it),
// whether it is a time.Duration, its enum and default.
func agentFlags(t *testing.T) map[string]agentFlag {
	t.Helper()
	fset := token.NewFileSet()
	files, err := filepath.Glob(filepath.Join("..", "cmd", "meshready", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("cmd/meshready sources: %v", err)
	}
	flags := map[string]agentFlag{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			st, ok := n.(*ast.StructType)
			if !ok {
				return true
			}
			for _, field := range st.Fields.List {
				if field.Tag == nil || len(field.Names) != 1 {
					continue
				}
				tagText, _ := strconv.Unquote(field.Tag.Value)
				tag := reflect.StructTag(tagText)
				if _, isCmd := tag.Lookup("cmd"); isCmd {
					continue
				}
				sel, isSel := field.Type.(*ast.SelectorExpr)
				fl := agentFlag{def: tag.Get("default"), duration: isSel && sel.Sel.Name == "Duration"}
				if e := tag.Get("enum"); e != "" {
					fl.enum = strings.Split(e, ",")
				}
				env := "MESHREADY_" + upperSnake(field.Names[0].Name)
				switch e := tag.Get("env"); e {
				case "-":
					continue // not read from the environment
				case "":
				default:
					env = e
				}
				flags[env] = fl
			}
			return true
		})
	}
	return flags
}

func upperSnake(name string) string {
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) && !unicode.IsUpper(rune(name[i-1])) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// MR122 and MR123 judge containers by the agent's own defaults and the
// values it accepts: read them from the agent's source, so the lint cannot
// drift from the binary it lints for.
func TestAgentSettingsMatchTheAgent(t *testing.T) {
	t.Parallel()
	flags := agentFlags(t)
	for env, want := range map[string]time.Duration{"MESHREADY_DRAIN_MAX": AgentDrainMax, "MESHREADY_GRACE": AgentGrace} {
		got, err := time.ParseDuration(flags[env].def)
		if err != nil || got != want {
			t.Errorf("%s: the agent's default is %q, the lint assumes %s", env, flags[env].def, want)
		}
	}
	for env, f := range flags {
		if f.duration && !agentEnvDurations[env] {
			t.Errorf("%s is a duration flag of the agent that MR123 does not check", env)
		}
		if f.enum != nil && !reflect.DeepEqual(agentEnvEnums[env], f.enum) {
			t.Errorf("%s: the agent accepts %v, MR123 accepts %v", env, f.enum, agentEnvEnums[env])
		}
	}
	for env := range agentEnvDurations {
		if !flags[env].duration {
			t.Errorf("MR123 checks %s as a duration; the agent has no such duration flag", env)
		}
	}
	for env := range agentEnvEnums {
		if flags[env].enum == nil {
			t.Errorf("MR123 checks %s as an enum; the agent has no such flag", env)
		}
	}
	if len(flags) < 20 {
		t.Errorf("read only %d flags from cmd/meshready: the parser misses them", len(flags))
	}
}

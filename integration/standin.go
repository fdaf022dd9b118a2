package integration

import "github.com/meshready/meshready/internal/sidecarstandin"

// The data-plane stand-in lives in the root module
// (internal/sidecarstandin), where the sidecar-standin binary is built from
// it too; these names keep the in-process uses here as they were.

type (
	DataPlane        = sidecarstandin.DataPlane
	DataPlaneOptions = sidecarstandin.Options
	AckMode          = sidecarstandin.AckMode
	Snapshot         = sidecarstandin.Snapshot
	TypeSnapshot     = sidecarstandin.TypeSnapshot
	Inbound          = sidecarstandin.Inbound
)

const (
	AckAll   = sidecarstandin.AckAll
	HoldAcks = sidecarstandin.HoldAcks
	Freeze   = sidecarstandin.Freeze

	TypeCDS = sidecarstandin.TypeCDS
	TypeEDS = sidecarstandin.TypeEDS
	TypeLDS = sidecarstandin.TypeLDS
	TypeRDS = sidecarstandin.TypeRDS
)

var (
	// StartDataPlane starts an in-process stand-in (sidecarstandin.Start).
	StartDataPlane = sidecarstandin.Start
	ShortType      = sidecarstandin.ShortType
)

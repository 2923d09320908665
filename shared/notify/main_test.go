package notify

import (
	"testing"

	"wxbridge/shared/awstest"
)

func TestMain(m *testing.M) { awstest.Main(m) }

package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestVerifyFilesCheck(t *testing.T) {
	many := VerifyFiles{}
	for i := range MaxVerifyFiles + 1 {
		many[fmt.Sprintf("f%d.txt", i)] = "x"
	}
	for _, tc := range []struct {
		name  string
		files VerifyFiles
		bad   string // what the error must name; "" for none
	}{
		{"none", nil, ""},
		{"official_account_web_authorization_domain", VerifyFiles{"MP_verify_7JNbT2dLQ3hNtY6s.txt": "7JNbT2dLQ3hNtY6s"}, ""},
		{"mini_program_business_domain", VerifyFiles{"6ynZPDvfTF.txt": "d41d8cd98f00b204e9800998ecf8427e"}, ""},
		{"content_up_to_the_limit", VerifyFiles{"a.txt": strings.Repeat("x", MaxVerifyFileSize)}, ""},
		{"a_path_is_not_a_name", VerifyFiles{"../MP_verify_x.txt": "x"}, `"../MP_verify_x.txt"`},
		{"a_directory_is_not_a_name", VerifyFiles{"wx/MP_verify_x.txt": "x"}, `"wx/MP_verify_x.txt"`},
		{"encoded_traversal", VerifyFiles{"%2e%2e.txt": "x"}, `"%2e%2e.txt"`},
		{"dot_dot", VerifyFiles{"...txt": "x"}, `"...txt"`},
		{"not_txt", VerifyFiles{"MP_verify_x.html": "x"}, `"MP_verify_x.html"`},
		{"no_extension", VerifyFiles{"MP_verify_x": "x"}, `"MP_verify_x"`},
		{"upper_case_extension", VerifyFiles{"MP_verify_x.TXT": "x"}, `"MP_verify_x.TXT"`},
		{"space", VerifyFiles{"MP verify.txt": "x"}, `"MP verify.txt"`},
		{"only_the_extension", VerifyFiles{".txt": "x"}, `".txt"`},
		{"name_too_long", VerifyFiles{strings.Repeat("a", 65) + ".txt": "x"}, "at most 64"},
		{"empty_content", VerifyFiles{"a.txt": ""}, "a.txt is empty"},
		{"content_too_large", VerifyFiles{"a.txt": strings.Repeat("x", MaxVerifyFileSize+1)}, "a.txt is 1025 bytes"},
		{"too_many", many, fmt.Sprintf("%d files", MaxVerifyFiles+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.files.Check()
			if tc.bad == "" {
				if err != nil {
					t.Fatalf("Check = %v", err)
				}
				return
			}
			if !errors.Is(err, ErrVerifyFile) || !strings.Contains(err.Error(), tc.bad) {
				t.Fatalf("Check = %v, want ErrVerifyFile naming %s", err, tc.bad)
			}
		})
	}
}

// TestVerifyFilesCheckNamesEveryBadEntryAndNoContent: one error names
// every entry to fix, and never prints what a file holds.
func TestVerifyFilesCheckNamesEveryBadEntryAndNoContent(t *testing.T) {
	err := VerifyFiles{"../a.txt": "content-one", "b.html": "content-two", "ok.txt": "fine"}.Check()
	if err == nil {
		t.Fatal("Check = nil")
	}
	for _, want := range []string{`"../a.txt"`, `"b.html"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check = %q, want it to name %s", err, want)
		}
	}
	for _, content := range []string{"content-one", "content-two", "ok.txt"} {
		if strings.Contains(err.Error(), content) {
			t.Errorf("Check = %q names %s", err, content)
		}
	}
}

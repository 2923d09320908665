package notify

import (
	"strings"

	"wxbridge/shared/contract"
	"wxbridge/shared/ddb"
)

// Outcome is the outcome event of a ledger change from before to after
// (before is the zero Entry for a new item), or ok false when the change
// is none a business is told of: not a status change, or to INPROGRESS.
// It is built from the ledger alone, so that a change is published however
// the writer fared after writing it, and nothing is published that the
// ledger does not say.
func Outcome(before, after Entry) (contract.Outcome, bool) {
	if after.JobID == "" || contract.DetailType(after.Status) == "" || before.Status == after.Status && before.CreatedAt.Equal(after.CreatedAt) {
		return contract.Outcome{}, false
	}
	o := contract.Outcome{
		Version:    contract.OutcomeVersion,
		EventID:    contract.OutcomeEventID(after.JobID, after.CreatedAt, after.Status),
		JobID:      after.JobID,
		Status:     after.Status,
		Final:      contract.FinalOutcome(after.Status, after.Channel, after.MsgID),
		Channel:    after.Channel,
		MsgID:      after.MsgID,
		ErrCode:    after.ErrCode,
		RID:        after.RID,
		Class:      after.Class,
		Reason:     after.Reason,
		Tried:      after.Tried,
		Attempts:   after.Attempts,
		Report:     after.Report,
		To:         after.To,
		UID:        after.UID,
		CreatedAt:  after.CreatedAt,
		At:         after.UpdatedAt,
		ReportedAt: after.ReportedAt,
	}
	return o, true
}

// LedgerPrefix starts the key (pk) of every ledger item.
const LedgerPrefix = "SEND#"

// EntryOf decodes a ledger item (a stream record's image, for one), or
// ok false when the item is not a ledger entry.
func EntryOf(item ddb.Item) (Entry, bool, error) {
	if !strings.HasPrefix(ddb.String(item, "pk"), LedgerPrefix) {
		return Entry{}, false, nil
	}
	e, err := decodeEntry(item)
	return e, err == nil, err
}

package main

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"

	"wxbridge/shared/notify"
)

// The console's demo templates: the sandbox accepts any template id of 43
// base64url characters.
const (
	demoTemplateID  = "wxbridgeDevTemplate-OrderShipped-0000000000"
	demoSubscribeID = "wxbridgeDevSubscribe-OrderShipped-000000000"
)

// sendForm is what the console's send form posts.
type sendForm struct {
	PersonID string   `json:"person_id"`
	UID      string   `json:"uid"`
	Channels []string `json:"channels"`
	Item     string   `json:"item"`  // thing1: what shipped
	Order    string   `json:"order"` // character_string2: the order number
}

// notifyRoutes adds consent, inbox and sending to the console's API.
func (s *Stack) notifyRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /_dev/api/people/{id}/consent", s.handle(func(r *http.Request) (any, error) {
		n, err := s.sb.GrantConsent(r.PathValue("id"), demoSubscribeID)
		return map[string]any{"template_id": demoSubscribeID, "consents": n}, err
	}))
	mux.HandleFunc("GET /_dev/api/people/{id}/inbox", s.handle(func(r *http.Request) (any, error) {
		return s.sb.Inbox(r.PathValue("id"))
	}))
	mux.HandleFunc("POST /_dev/api/send", s.handle(func(r *http.Request) (any, error) {
		var f sendForm
		if err := readJSON(r, &f); err != nil {
			return nil, err
		}
		job := demoJob(f, time.Now())
		id, err := notify.NewClient(sqs.NewFromConfig(s.aws), s.res.queues["SendQueue"]).Enqueue(r.Context(), job)
		if errors.Is(err, notify.ErrInvalid) {
			return nil, badRequest{err}
		}
		return map[string]string{"job_id": job.ID, "message_id": id}, err
	}))
}

// demoJob is the job the console's form describes: an "order shipped"
// notice through the chosen channels.
func demoJob(f sendForm, now time.Time) notify.Job {
	data := map[string]string{"thing1": f.Item, "character_string2": f.Order}
	job := notify.Job{
		ID:        fmt.Sprintf("dev-%s-%d", f.Order, now.UnixNano()),
		To:        notify.Recipient{UID: f.UID},
		Template:  &notify.TemplateMessage{TemplateID: demoTemplateID, Data: data},
		Subscribe: &notify.SubscribeMessage{TemplateID: demoSubscribeID, Page: "pages/order/detail?id=" + f.Order, Data: data},
	}
	for _, c := range f.Channels {
		job.Channels = append(job.Channels, notify.Channel(c))
	}
	return job
}

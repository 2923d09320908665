package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awslambda "github.com/aws/aws-sdk-go-v2/service/lambda"
	lambdatypes "github.com/aws/aws-sdk-go-v2/service/lambda/types"
)

// Payload limits of the Lambda Invoke API: 6 MB for a synchronous invoke,
// 1 MB for an asynchronous one.
const (
	maxSyncPayload  = 6 << 20
	maxAsyncPayload = 1 << 20
)

// lookup finds a function by what the Lambda API takes as FunctionName: a
// name, a partial ARN (123456789012:function:Name) or a full ARN, with or
// without a version or alias qualifier. Locally a function is named by its
// logical ID in template.yaml; a name that ends with one (as the stack's
// deployed names do) finds it too, the longest such ID winning.
func (fs *functions) lookup(functionName string) (*function, string) {
	name := functionName
	if i := strings.Index(name, "function:"); i >= 0 {
		name = name[i+len("function:"):]
	}
	name, _, _ = strings.Cut(name, ":") // the qualifier
	fs.mu.RLock()
	defer fs.mu.RUnlock()
	if f := fs.fns[name]; f != nil {
		return f, name
	}
	var found *function
	id := name
	for logicalID, f := range fs.fns {
		if strings.HasSuffix(name, logicalID) && (found == nil || len(logicalID) > len(id)) {
			found, id = f, logicalID
		}
	}
	return found, id
}

// functionError is the payload Lambda answers for a function that returned
// err: the message and the error's Go type name, as the Go runtime
// (aws-lambda-go) reports them.
func functionError(err error) []byte { return errorPayload(err.Error(), err) }

// errorPayload is {"errorMessage", "errorType"} for msg and the value v
// that failed (an error, or what a function panicked with).
func errorPayload(msg string, v any) []byte {
	var typ string
	if t := reflect.TypeOf(v); t != nil {
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		typ = t.Name()
	}
	b, _ := json.Marshal(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType,omitempty"`
	}{msg, typ})
	return b
}

// invokeRoutes answers the Lambda Invoke API for every template function at
// the devstack's own address, so that the AWS CLI or an SDK's Lambda client
// with the devstack as its endpoint can run any function on demand.
func (fs *functions) invokeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /2015-03-31/functions/{name}/invocations", fs.serveInvoke)
}

// serveInvoke is POST /2015-03-31/functions/{FunctionName}/invocations.
// X-Amz-Invocation-Type RequestResponse (the default) runs the function and
// answers 200 with its result, or with X-Amz-Function-Error: Unhandled and
// {"errorMessage", "errorType"} if it fails; Event runs it in the
// background and answers 202; DryRun only checks that it exists (204).
func (fs *functions) serveInvoke(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	typ := lambdatypes.InvocationType(r.Header.Get("X-Amz-Invocation-Type"))
	limit := maxSyncPayload
	switch typ {
	case "":
		typ = lambdatypes.InvocationTypeRequestResponse
	case lambdatypes.InvocationTypeRequestResponse, lambdatypes.InvocationTypeDryRun:
	case lambdatypes.InvocationTypeEvent:
		limit = maxAsyncPayload
	default:
		lambdaAPIError(w, http.StatusBadRequest, "InvalidParameterValueException",
			fmt.Sprintf("1 validation error detected: Value '%s' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]", typ))
		return
	}
	payload, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return // the client went away
	}
	if len(payload) > limit {
		lambdaAPIError(w, http.StatusRequestEntityTooLarge, "RequestTooLargeException",
			fmt.Sprintf("Request must be smaller than %d bytes for the %s invocation type", limit, typ))
		return
	}
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = []byte("{}") // Lambda hands a function called without a payload {}
	}
	if !json.Valid(payload) {
		lambdaAPIError(w, http.StatusBadRequest, "InvalidRequestContentException", "Could not parse request body into json: the payload is not valid JSON")
		return
	}
	w.Header().Set("X-Amzn-RequestId", requestID())
	// A synchronous invocation runs to its end (or its timeout) even if the
	// caller hangs up, as in Lambda.
	ctx := context.WithoutCancel(r.Context())
	out, err := fs.invokeOrPanic(ctx, &awslambda.InvokeInput{FunctionName: aws.String(name), InvocationType: typ, Payload: payload})
	var notFound *lambdatypes.ResourceNotFoundException
	switch {
	case errors.As(err, &notFound):
		lambdaAPIError(w, http.StatusNotFound, "ResourceNotFoundException",
			fmt.Sprintf("Function not found: arn:aws:lambda:us-east-1:%s:function:%s", account, name))
		return
	case err != nil:
		lambdaAPIError(w, http.StatusInternalServerError, "ServiceException", err.Error())
		return
	}
	if typ == lambdatypes.InvocationTypeRequestResponse {
		w.Header().Set("X-Amz-Executed-Version", "$LATEST")
		w.Header().Set("Content-Type", "application/json")
	}
	if out.FunctionError != nil {
		w.Header().Set("X-Amz-Function-Error", *out.FunctionError)
	}
	w.WriteHeader(int(out.StatusCode))
	w.Write(out.Payload)
}

// invokeOrPanic is fs.Invoke with a function's panic reported as Lambda
// reports it (a function error) instead of tearing down the request.
func (fs *functions) invokeOrPanic(ctx context.Context, in *awslambda.InvokeInput) (out *awslambda.InvokeOutput, err error) {
	defer func() {
		if v := recover(); v != nil {
			out, err = &awslambda.InvokeOutput{StatusCode: 200, FunctionError: aws.String("Unhandled"), Payload: errorPayload(fmt.Sprint(v), v)}, nil
			fs.log.Error("function panicked", "function", aws.ToString(in.FunctionName), "panic", v)
		}
	}()
	return fs.Invoke(ctx, in)
}

// lambdaAPIError writes an error of the Lambda API itself (not of the
// function): the code in X-Amzn-ErrorType, as the SDK reads it.
func lambdaAPIError(w http.ResponseWriter, status int, code, msg string) {
	// Lambda's model names the message member "Message" in
	// ResourceNotFoundException and "message" in the others.
	key := "message"
	if code == "ResourceNotFoundException" {
		key = "Message"
	}
	w.Header().Set("X-Amzn-ErrorType", code)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"Type": "User", key: msg})
}

package main

import (
	"context"
	"errors"
)

func runServe(ctx context.Context, args []string) error { return errors.New("not yet wired") }
func runCall(ctx context.Context, args []string) error  { return errors.New("not yet wired") }
func runBench(ctx context.Context, args []string) error { return errors.New("not yet wired") }

package dialplan_test

import (
	"errors"
	"fmt"

	"github.com/patchbay/patchbay/dialplan"
)

func ExampleRouter_Route() {
	r, err := dialplan.NewRouter(dialplan.DefaultRules())
	if err != nil {
		fmt.Println(err)
		return
	}
	d, _ := r.Route("+44 (0)20 7946-0000")
	fmt.Println(d.Kind, d.Number, d.Trunk, d.Endpoint)

	_, err = r.Route("500&SIP/itsp/14165551212")
	var re *dialplan.RouteError
	if errors.As(err, &re) {
		fmt.Println(re.Code)
	}
	_, err = r.Route("+1 900 555 0100")
	fmt.Println(errors.Is(err, dialplan.ErrForbiddenDestination))
	// Output:
	// pstn +442079460000 pstn Local/+442079460000@from-patchbay
	// invalid_number
	// true
}

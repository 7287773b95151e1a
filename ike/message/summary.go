package message

import (
	"strconv"
	"strings"
)

// String names the transform the way logs want it, e.g.
// "ENCR_AES_GCM_16_256", "PRF_HMAC_SHA2_384" or "ECP_384".
func (t Transform) String() string {
	var s string
	switch t.Type {
	case TransformENCR:
		s = EncrID(t.ID).String()
	case TransformPRF:
		s = PRFID(t.ID).String()
	case TransformINTEG:
		s = IntegID(t.ID).String()
	case TransformKE:
		s = KEGroup(t.ID).String()
	case TransformESN:
		s = ESNID(t.ID).String()
	case TransformADDKE1, TransformADDKE1 + 1, TransformADDKE1 + 2, TransformADDKE1 + 3, TransformADDKE1 + 4,
		TransformADDKE1 + 5, TransformADDKE7:
		// "ADDKE1/ML_KEM_768": which exchange, and its method.
		s = t.Type.String() + "/" + KEGroup(t.ID).String()
	default:
		s = t.Type.String() + "/" + strconv.Itoa(int(t.ID))
	}
	if t.KeyLength != 0 {
		s += "_" + strconv.Itoa(int(t.KeyLength))
	}
	return s
}

// String summarises m for logs in the style strongSwan uses, e.g.
// "IKE_SA_INIT request 0 [ SA KE Ni/Nr N(NAT_DETECTION_SOURCE_IP) ]".
// It prints types only, never key material or identities.
func (m *Message) String() string {
	var b strings.Builder
	b.WriteString(m.Header.Exchange.String())
	if m.Header.IsResponse() {
		b.WriteString(" response ")
	} else {
		b.WriteString(" request ")
	}
	b.WriteString(strconv.FormatUint(uint64(m.Header.MessageID), 10))
	b.WriteString(" [")
	for _, p := range m.Payloads {
		b.WriteByte(' ')
		switch p := p.(type) {
		case nil:
			b.WriteString("<nil>")
		case *Notify:
			b.WriteString("N(" + p.NotifyType.String() + ")")
		case *SK:
			b.WriteString("SK(" + p.NextPayload.String() + ")")
		case *SKF:
			b.WriteString("SKF(" + strconv.Itoa(int(p.Number)) + "/" + strconv.Itoa(int(p.Total)) + ")")
		default:
			b.WriteString(p.Type().String())
		}
	}
	b.WriteString(" ]")
	return b.String()
}

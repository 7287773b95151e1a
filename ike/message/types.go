package message

import "strconv"

// PayloadType is the Next Payload / payload type value (RFC 7296 section 3.2, RFC 7383).
type PayloadType uint8

const (
	PayloadNone     PayloadType = 0 // No Next Payload.
	PayloadSA       PayloadType = 33
	PayloadKE       PayloadType = 34
	PayloadIDi      PayloadType = 35
	PayloadIDr      PayloadType = 36
	PayloadCERT     PayloadType = 37
	PayloadCERTREQ  PayloadType = 38
	PayloadAUTH     PayloadType = 39
	PayloadNonce    PayloadType = 40
	PayloadNotify   PayloadType = 41
	PayloadDelete   PayloadType = 42
	PayloadVendorID PayloadType = 43
	PayloadTSi      PayloadType = 44
	PayloadTSr      PayloadType = 45
	PayloadSK       PayloadType = 46
	PayloadCP       PayloadType = 47
	PayloadEAP      PayloadType = 48
	PayloadSKF      PayloadType = 53
)

// String returns the registry name, or PayloadType(n) for unassigned values.
func (t PayloadType) String() string {
	switch t {
	case PayloadNone:
		return "NONE"
	case PayloadSA:
		return "SA"
	case PayloadKE:
		return "KE"
	case PayloadIDi:
		return "IDi"
	case PayloadIDr:
		return "IDr"
	case PayloadCERT:
		return "CERT"
	case PayloadCERTREQ:
		return "CERTREQ"
	case PayloadAUTH:
		return "AUTH"
	case PayloadNonce:
		return "Ni/Nr"
	case PayloadNotify:
		return "N"
	case PayloadDelete:
		return "D"
	case PayloadVendorID:
		return "V"
	case PayloadTSi:
		return "TSi"
	case PayloadTSr:
		return "TSr"
	case PayloadSK:
		return "SK"
	case PayloadCP:
		return "CP"
	case PayloadEAP:
		return "EAP"
	case PayloadSKF:
		return "SKF"
	}
	return "PayloadType(" + strconv.Itoa(int(t)) + ")"
}

// ExchangeType is the IKE header's Exchange Type (RFC 7296 section 3.1, RFC 9242).
type ExchangeType uint8

const (
	ExchangeIKESAInit        ExchangeType = 34
	ExchangeIKEAuth          ExchangeType = 35
	ExchangeCreateChildSA    ExchangeType = 36
	ExchangeInformational    ExchangeType = 37
	ExchangeIKESessionResume ExchangeType = 38
	ExchangeIKEIntermediate  ExchangeType = 43
)

// String returns the registry name, or ExchangeType(n) for unassigned values.
func (t ExchangeType) String() string {
	switch t {
	case ExchangeIKESAInit:
		return "IKE_SA_INIT"
	case ExchangeIKEAuth:
		return "IKE_AUTH"
	case ExchangeCreateChildSA:
		return "CREATE_CHILD_SA"
	case ExchangeInformational:
		return "INFORMATIONAL"
	case ExchangeIKESessionResume:
		return "IKE_SESSION_RESUME"
	case ExchangeIKEIntermediate:
		return "IKE_INTERMEDIATE"
	}
	return "ExchangeType(" + strconv.Itoa(int(t)) + ")"
}

// ProtocolID identifies the protocol of a proposal, notification or delete (RFC 7296 section 3.3.1).
type ProtocolID uint8

const (
	ProtocolNone ProtocolID = 0 // No protocol; used by notifications without an SPI.
	ProtocolIKE  ProtocolID = 1
	ProtocolAH   ProtocolID = 2
	ProtocolESP  ProtocolID = 3
)

// String returns the registry name, or ProtocolID(n) for unassigned values.
func (t ProtocolID) String() string {
	switch t {
	case ProtocolNone:
		return "NONE"
	case ProtocolIKE:
		return "IKE"
	case ProtocolAH:
		return "AH"
	case ProtocolESP:
		return "ESP"
	}
	return "ProtocolID(" + strconv.Itoa(int(t)) + ")"
}

// TransformType is a transform's type (RFC 7296 section 3.3.2; type 4 renamed Key Exchange Method by RFC 9370).
type TransformType uint8

const (
	TransformENCR  TransformType = 1
	TransformPRF   TransformType = 2
	TransformINTEG TransformType = 3
	TransformKE    TransformType = 4 // Key exchange method, called D-H in RFC 7296.
	TransformESN   TransformType = 5
	// TransformADDKE1 to TransformADDKE7 are the additional key exchanges
	// of RFC 9370 (types 6 to 12); their IDs are key exchange methods.
	TransformADDKE1 TransformType = 6
	TransformADDKE7 TransformType = 12
)

// String returns the registry name, or TransformType(n) for unassigned values.
func (t TransformType) String() string {
	switch t {
	case TransformENCR:
		return "ENCR"
	case TransformPRF:
		return "PRF"
	case TransformINTEG:
		return "INTEG"
	case TransformKE:
		return "KE"
	case TransformESN:
		return "ESN"
	}
	if t >= TransformADDKE1 && t <= TransformADDKE7 {
		return "ADDKE" + strconv.Itoa(int(t-TransformADDKE1)+1)
	}
	return "TransformType(" + strconv.Itoa(int(t)) + ")"
}

// EncrID is a Transform ID of type ENCR (IANA IKEv2 Transform Type 1).
type EncrID uint16

const (
	EncrDES              EncrID = 2
	Encr3DES             EncrID = 3
	EncrNULL             EncrID = 11
	EncrAESCBC           EncrID = 12
	EncrAESCTR           EncrID = 13
	EncrAESCCM8          EncrID = 14
	EncrAESCCM12         EncrID = 15
	EncrAESCCM16         EncrID = 16
	EncrAESGCM8          EncrID = 18
	EncrAESGCM12         EncrID = 19
	EncrAESGCM16         EncrID = 20
	EncrNullAuthAESGMAC  EncrID = 21
	EncrChaCha20Poly1305 EncrID = 28
)

// String returns the registry name, or EncrID(n) for unassigned values.
func (t EncrID) String() string {
	switch t {
	case EncrDES:
		return "ENCR_DES"
	case Encr3DES:
		return "ENCR_3DES"
	case EncrNULL:
		return "ENCR_NULL"
	case EncrAESCBC:
		return "ENCR_AES_CBC"
	case EncrAESCTR:
		return "ENCR_AES_CTR"
	case EncrAESCCM8:
		return "ENCR_AES_CCM_8"
	case EncrAESCCM12:
		return "ENCR_AES_CCM_12"
	case EncrAESCCM16:
		return "ENCR_AES_CCM_16"
	case EncrAESGCM8:
		return "ENCR_AES_GCM_8"
	case EncrAESGCM12:
		return "ENCR_AES_GCM_12"
	case EncrAESGCM16:
		return "ENCR_AES_GCM_16"
	case EncrNullAuthAESGMAC:
		return "ENCR_NULL_AUTH_AES_GMAC"
	case EncrChaCha20Poly1305:
		return "ENCR_CHACHA20_POLY1305"
	}
	return "EncrID(" + strconv.Itoa(int(t)) + ")"
}

// PRFID is a Transform ID of type PRF (IANA IKEv2 Transform Type 2).
type PRFID uint16

const (
	PRFHMACMD5      PRFID = 1
	PRFHMACSHA1     PRFID = 2
	PRFAES128XCBC   PRFID = 4
	PRFHMACSHA2_256 PRFID = 5
	PRFHMACSHA2_384 PRFID = 6
	PRFHMACSHA2_512 PRFID = 7
	PRFAES128CMAC   PRFID = 8
)

// String returns the registry name, or PRFID(n) for unassigned values.
func (t PRFID) String() string {
	switch t {
	case PRFHMACMD5:
		return "PRF_HMAC_MD5"
	case PRFHMACSHA1:
		return "PRF_HMAC_SHA1"
	case PRFAES128XCBC:
		return "PRF_AES128_XCBC"
	case PRFHMACSHA2_256:
		return "PRF_HMAC_SHA2_256"
	case PRFHMACSHA2_384:
		return "PRF_HMAC_SHA2_384"
	case PRFHMACSHA2_512:
		return "PRF_HMAC_SHA2_512"
	case PRFAES128CMAC:
		return "PRF_AES128_CMAC"
	}
	return "PRFID(" + strconv.Itoa(int(t)) + ")"
}

// IntegID is a Transform ID of type INTEG (IANA IKEv2 Transform Type 3).
type IntegID uint16

const (
	IntegNone             IntegID = 0
	IntegHMACMD5_96       IntegID = 1
	IntegHMACSHA1_96      IntegID = 2
	IntegAESXCBC96        IntegID = 5
	IntegAESCMAC96        IntegID = 8
	IntegHMACSHA2_256_128 IntegID = 12
	IntegHMACSHA2_384_192 IntegID = 13
	IntegHMACSHA2_512_256 IntegID = 14
)

// String returns the registry name, or IntegID(n) for unassigned values.
func (t IntegID) String() string {
	switch t {
	case IntegNone:
		return "NONE"
	case IntegHMACMD5_96:
		return "AUTH_HMAC_MD5_96"
	case IntegHMACSHA1_96:
		return "AUTH_HMAC_SHA1_96"
	case IntegAESXCBC96:
		return "AUTH_AES_XCBC_96"
	case IntegAESCMAC96:
		return "AUTH_AES_CMAC_96"
	case IntegHMACSHA2_256_128:
		return "AUTH_HMAC_SHA2_256_128"
	case IntegHMACSHA2_384_192:
		return "AUTH_HMAC_SHA2_384_192"
	case IntegHMACSHA2_512_256:
		return "AUTH_HMAC_SHA2_512_256"
	}
	return "IntegID(" + strconv.Itoa(int(t)) + ")"
}

// KEGroup is a Transform ID of type KE, the Diffie-Hellman group or key exchange method (IANA IKEv2 Transform Type 4); it is also the group number in the KE payload and in INVALID_KE_PAYLOAD.
type KEGroup uint16

const (
	GroupNone         KEGroup = 0
	GroupMODP768      KEGroup = 1
	GroupMODP1024     KEGroup = 2
	GroupMODP1536     KEGroup = 5
	GroupMODP2048     KEGroup = 14
	GroupMODP3072     KEGroup = 15
	GroupMODP4096     KEGroup = 16
	GroupMODP6144     KEGroup = 17
	GroupMODP8192     KEGroup = 18
	GroupECP256       KEGroup = 19
	GroupECP384       KEGroup = 20
	GroupECP521       KEGroup = 21
	GroupMODP1024S160 KEGroup = 22
	GroupMODP2048S224 KEGroup = 23
	GroupMODP2048S256 KEGroup = 24
	GroupCurve25519   KEGroup = 31
	GroupCurve448     KEGroup = 32
	GroupGOST256      KEGroup = 33
	GroupGOST512      KEGroup = 34
	// ML-KEM (FIPS 203), for IKE_INTERMEDIATE's additional key exchanges.
	GroupMLKEM512  KEGroup = 35
	GroupMLKEM768  KEGroup = 36
	GroupMLKEM1024 KEGroup = 37
)

// String returns the registry name, or KEGroup(n) for unassigned values.
func (t KEGroup) String() string {
	switch t {
	case GroupNone:
		return "NONE"
	case GroupMODP768:
		return "MODP_768"
	case GroupMODP1024:
		return "MODP_1024"
	case GroupMODP1536:
		return "MODP_1536"
	case GroupMODP2048:
		return "MODP_2048"
	case GroupMODP3072:
		return "MODP_3072"
	case GroupMODP4096:
		return "MODP_4096"
	case GroupMODP6144:
		return "MODP_6144"
	case GroupMODP8192:
		return "MODP_8192"
	case GroupECP256:
		return "ECP_256"
	case GroupECP384:
		return "ECP_384"
	case GroupECP521:
		return "ECP_521"
	case GroupMODP1024S160:
		return "MODP_1024_160"
	case GroupMODP2048S224:
		return "MODP_2048_224"
	case GroupMODP2048S256:
		return "MODP_2048_256"
	case GroupCurve25519:
		return "CURVE25519"
	case GroupCurve448:
		return "CURVE448"
	case GroupGOST256:
		return "GOST3410_2012_256"
	case GroupGOST512:
		return "GOST3410_2012_512"
	case GroupMLKEM512:
		return "ML_KEM_512"
	case GroupMLKEM768:
		return "ML_KEM_768"
	case GroupMLKEM1024:
		return "ML_KEM_1024"
	}
	return "KEGroup(" + strconv.Itoa(int(t)) + ")"
}

// ESNID is a Transform ID of type ESN (IANA IKEv2 Transform Type 5).
type ESNID uint16

const (
	ESNNo  ESNID = 0
	ESNYes ESNID = 1
)

// String returns the registry name, or ESNID(n) for unassigned values.
func (t ESNID) String() string {
	switch t {
	case ESNNo:
		return "NO_ESN"
	case ESNYes:
		return "ESN"
	}
	return "ESNID(" + strconv.Itoa(int(t)) + ")"
}

// IDType is the identification type of an IDi/IDr payload (RFC 7296 section 3.5).
type IDType uint8

const (
	IDIPv4Addr   IDType = 1
	IDFQDN       IDType = 2
	IDRFC822Addr IDType = 3
	IDIPv6Addr   IDType = 5
	IDDERASN1DN  IDType = 9
	IDDERASN1GN  IDType = 10
	IDKeyID      IDType = 11
	IDNull       IDType = 13 // RFC 7619.
)

// String returns the registry name, or IDType(n) for unassigned values.
func (t IDType) String() string {
	switch t {
	case IDIPv4Addr:
		return "ID_IPV4_ADDR"
	case IDFQDN:
		return "ID_FQDN"
	case IDRFC822Addr:
		return "ID_RFC822_ADDR"
	case IDIPv6Addr:
		return "ID_IPV6_ADDR"
	case IDDERASN1DN:
		return "ID_DER_ASN1_DN"
	case IDDERASN1GN:
		return "ID_DER_ASN1_GN"
	case IDKeyID:
		return "ID_KEY_ID"
	case IDNull:
		return "ID_NULL"
	}
	return "IDType(" + strconv.Itoa(int(t)) + ")"
}

// CertEncoding is the encoding of a CERT or CERTREQ payload (RFC 7296 section 3.6).
type CertEncoding uint8

const (
	CertPKCS7X509     CertEncoding = 1
	CertPGP           CertEncoding = 2
	CertDNSSignedKey  CertEncoding = 3
	CertX509Signature CertEncoding = 4
	CertKerberos      CertEncoding = 6
	CertCRL           CertEncoding = 7
	CertARL           CertEncoding = 8
	CertSPKI          CertEncoding = 9
	CertX509Attribute CertEncoding = 10
	CertRawRSAKey     CertEncoding = 11
	CertHashURLX509   CertEncoding = 12
	CertHashURLBundle CertEncoding = 13
	CertOCSPContent   CertEncoding = 14 // RFC 4806.
	CertRawPublicKey  CertEncoding = 15 // RFC 7670.
)

// String returns the registry name, or CertEncoding(n) for unassigned values.
func (t CertEncoding) String() string {
	switch t {
	case CertPKCS7X509:
		return "PKCS7_X509"
	case CertPGP:
		return "PGP"
	case CertDNSSignedKey:
		return "DNS_SIGNED_KEY"
	case CertX509Signature:
		return "X509_CERT_SIGNATURE"
	case CertKerberos:
		return "KERBEROS_TOKEN"
	case CertCRL:
		return "CRL"
	case CertARL:
		return "ARL"
	case CertSPKI:
		return "SPKI"
	case CertX509Attribute:
		return "X509_ATTRIBUTE"
	case CertRawRSAKey:
		return "RAW_RSA_KEY"
	case CertHashURLX509:
		return "HASH_URL_X509_CERT"
	case CertHashURLBundle:
		return "HASH_URL_X509_BUNDLE"
	case CertOCSPContent:
		return "OCSP_CONTENT"
	case CertRawPublicKey:
		return "RAW_PUBLIC_KEY"
	}
	return "CertEncoding(" + strconv.Itoa(int(t)) + ")"
}

// AuthMethod is the authentication method of an AUTH payload (RFC 7296 section 3.8, RFC 4754, RFC 7427).
type AuthMethod uint8

const (
	AuthRSASig           AuthMethod = 1
	AuthSharedKeyMIC     AuthMethod = 2
	AuthDSSSig           AuthMethod = 3
	AuthECDSA256         AuthMethod = 9
	AuthECDSA384         AuthMethod = 10
	AuthECDSA521         AuthMethod = 11
	AuthGSPAM            AuthMethod = 12
	AuthNULL             AuthMethod = 13 // RFC 7619.
	AuthDigitalSignature AuthMethod = 14 // RFC 7427.
)

// String returns the registry name, or AuthMethod(n) for unassigned values.
func (t AuthMethod) String() string {
	switch t {
	case AuthRSASig:
		return "RSA_SIG"
	case AuthSharedKeyMIC:
		return "SHARED_KEY_MIC"
	case AuthDSSSig:
		return "DSS_SIG"
	case AuthECDSA256:
		return "ECDSA_SHA256_P256"
	case AuthECDSA384:
		return "ECDSA_SHA384_P384"
	case AuthECDSA521:
		return "ECDSA_SHA512_P521"
	case AuthGSPAM:
		return "GSPAM"
	case AuthNULL:
		return "NULL_AUTH"
	case AuthDigitalSignature:
		return "DIGITAL_SIGNATURE"
	}
	return "AuthMethod(" + strconv.Itoa(int(t)) + ")"
}

// TSType is a traffic selector's type (RFC 7296 section 3.13.1).
type TSType uint8

const (
	TSIPv4AddrRange TSType = 7
	TSIPv6AddrRange TSType = 8
)

// String returns the registry name, or TSType(n) for unassigned values.
func (t TSType) String() string {
	switch t {
	case TSIPv4AddrRange:
		return "TS_IPV4_ADDR_RANGE"
	case TSIPv6AddrRange:
		return "TS_IPV6_ADDR_RANGE"
	}
	return "TSType(" + strconv.Itoa(int(t)) + ")"
}

// CFGType is a CP payload's configuration message type (RFC 7296 section 3.15).
type CFGType uint8

const (
	CFGRequest CFGType = 1
	CFGReply   CFGType = 2
	CFGSet     CFGType = 3
	CFGAck     CFGType = 4
)

// String returns the registry name, or CFGType(n) for unassigned values.
func (t CFGType) String() string {
	switch t {
	case CFGRequest:
		return "CFG_REQUEST"
	case CFGReply:
		return "CFG_REPLY"
	case CFGSet:
		return "CFG_SET"
	case CFGAck:
		return "CFG_ACK"
	}
	return "CFGType(" + strconv.Itoa(int(t)) + ")"
}

// CPAttrType is a configuration attribute type (RFC 7296 section 3.15.1).
type CPAttrType uint16

const (
	CPAttrInternalIP4Address  CPAttrType = 1
	CPAttrInternalIP4Netmask  CPAttrType = 2
	CPAttrInternalIP4DNS      CPAttrType = 3
	CPAttrInternalIP4NBNS     CPAttrType = 4
	CPAttrInternalIP4DHCP     CPAttrType = 6
	CPAttrApplicationVersion  CPAttrType = 7
	CPAttrInternalIP6Address  CPAttrType = 8
	CPAttrInternalIP6DNS      CPAttrType = 10
	CPAttrInternalIP6DHCP     CPAttrType = 12
	CPAttrInternalIP4Subnet   CPAttrType = 13
	CPAttrSupportedAttributes CPAttrType = 14
	CPAttrInternalIP6Subnet   CPAttrType = 15
)

// String returns the registry name, or CPAttrType(n) for unassigned values.
func (t CPAttrType) String() string {
	switch t {
	case CPAttrInternalIP4Address:
		return "INTERNAL_IP4_ADDRESS"
	case CPAttrInternalIP4Netmask:
		return "INTERNAL_IP4_NETMASK"
	case CPAttrInternalIP4DNS:
		return "INTERNAL_IP4_DNS"
	case CPAttrInternalIP4NBNS:
		return "INTERNAL_IP4_NBNS"
	case CPAttrInternalIP4DHCP:
		return "INTERNAL_IP4_DHCP"
	case CPAttrApplicationVersion:
		return "APPLICATION_VERSION"
	case CPAttrInternalIP6Address:
		return "INTERNAL_IP6_ADDRESS"
	case CPAttrInternalIP6DNS:
		return "INTERNAL_IP6_DNS"
	case CPAttrInternalIP6DHCP:
		return "INTERNAL_IP6_DHCP"
	case CPAttrInternalIP4Subnet:
		return "INTERNAL_IP4_SUBNET"
	case CPAttrSupportedAttributes:
		return "SUPPORTED_ATTRIBUTES"
	case CPAttrInternalIP6Subnet:
		return "INTERNAL_IP6_SUBNET"
	}
	return "CPAttrType(" + strconv.Itoa(int(t)) + ")"
}

// NotifyType is a Notify Message Type (RFC 7296 section 3.10.1 and the IANA registry). Types below 16384 are errors, the rest status notifications.
type NotifyType uint16

const (
	NotifyUnsupportedCriticalPayload    NotifyType = 1
	NotifyInvalidIKESPI                 NotifyType = 4
	NotifyInvalidMajorVersion           NotifyType = 5
	NotifyInvalidSyntax                 NotifyType = 7
	NotifyInvalidMessageID              NotifyType = 9
	NotifyInvalidSPI                    NotifyType = 11
	NotifyNoProposalChosen              NotifyType = 14
	NotifyInvalidKEPayload              NotifyType = 17
	NotifyAuthenticationFailed          NotifyType = 24
	NotifySinglePairRequired            NotifyType = 34
	NotifyNoAdditionalSAs               NotifyType = 35
	NotifyInternalAddressFailure        NotifyType = 36
	NotifyFailedCPRequired              NotifyType = 37
	NotifyTSUnacceptable                NotifyType = 38
	NotifyInvalidSelectors              NotifyType = 39
	NotifyUnacceptableAddresses         NotifyType = 40
	NotifyUnexpectedNATDetected         NotifyType = 41
	NotifyUseAssignedHoA                NotifyType = 42
	NotifyTemporaryFailure              NotifyType = 43
	NotifyChildSANotFound               NotifyType = 44
	NotifyInitialContact                NotifyType = 16384
	NotifySetWindowSize                 NotifyType = 16385
	NotifyAdditionalTSPossible          NotifyType = 16386
	NotifyIPCompSupported               NotifyType = 16387
	NotifyNATDetectionSourceIP          NotifyType = 16388
	NotifyNATDetectionDestinationIP     NotifyType = 16389
	NotifyCookie                        NotifyType = 16390
	NotifyUseTransportMode              NotifyType = 16391
	NotifyHTTPCertLookupSupported       NotifyType = 16392
	NotifyRekeySA                       NotifyType = 16393
	NotifyESPTFCPaddingNotSupported     NotifyType = 16394
	NotifyNonFirstFragmentsAlso         NotifyType = 16395
	NotifyMOBIKESupported               NotifyType = 16396
	NotifyAdditionalIP4Address          NotifyType = 16397
	NotifyAdditionalIP6Address          NotifyType = 16398
	NotifyNoAdditionalAddresses         NotifyType = 16399
	NotifyUpdateSAAddresses             NotifyType = 16400
	NotifyCookie2                       NotifyType = 16401
	NotifyNoNATsAllowed                 NotifyType = 16402
	NotifyAuthLifetime                  NotifyType = 16403
	NotifyMultipleAuthSupported         NotifyType = 16404
	NotifyAnotherAuthFollows            NotifyType = 16405
	NotifyRedirectSupported             NotifyType = 16406
	NotifyRedirect                      NotifyType = 16407
	NotifyRedirectedFrom                NotifyType = 16408
	NotifyEAPOnlyAuthentication         NotifyType = 16417
	NotifyChildlessIKEv2Supported       NotifyType = 16418
	NotifyQuickCrashDetection           NotifyType = 16419
	NotifyIKEv2FragmentationSupported   NotifyType = 16430
	NotifySignatureHashAlgorithms       NotifyType = 16431
	NotifyUsePPK                        NotifyType = 16435
	NotifyPPKIdentity                   NotifyType = 16436
	NotifyNoPPKAuth                     NotifyType = 16437
	NotifyIntermediateExchangeSupported NotifyType = 16438
)

// String returns the registry name, or NotifyType(n) for unassigned values.
func (t NotifyType) String() string {
	switch t {
	case NotifyUnsupportedCriticalPayload:
		return "UNSUPPORTED_CRITICAL_PAYLOAD"
	case NotifyInvalidIKESPI:
		return "INVALID_IKE_SPI"
	case NotifyInvalidMajorVersion:
		return "INVALID_MAJOR_VERSION"
	case NotifyInvalidSyntax:
		return "INVALID_SYNTAX"
	case NotifyInvalidMessageID:
		return "INVALID_MESSAGE_ID"
	case NotifyInvalidSPI:
		return "INVALID_SPI"
	case NotifyNoProposalChosen:
		return "NO_PROPOSAL_CHOSEN"
	case NotifyInvalidKEPayload:
		return "INVALID_KE_PAYLOAD"
	case NotifyAuthenticationFailed:
		return "AUTHENTICATION_FAILED"
	case NotifySinglePairRequired:
		return "SINGLE_PAIR_REQUIRED"
	case NotifyNoAdditionalSAs:
		return "NO_ADDITIONAL_SAS"
	case NotifyInternalAddressFailure:
		return "INTERNAL_ADDRESS_FAILURE"
	case NotifyFailedCPRequired:
		return "FAILED_CP_REQUIRED"
	case NotifyTSUnacceptable:
		return "TS_UNACCEPTABLE"
	case NotifyInvalidSelectors:
		return "INVALID_SELECTORS"
	case NotifyUnacceptableAddresses:
		return "UNACCEPTABLE_ADDRESSES"
	case NotifyUnexpectedNATDetected:
		return "UNEXPECTED_NAT_DETECTED"
	case NotifyUseAssignedHoA:
		return "USE_ASSIGNED_HoA"
	case NotifyTemporaryFailure:
		return "TEMPORARY_FAILURE"
	case NotifyChildSANotFound:
		return "CHILD_SA_NOT_FOUND"
	case NotifyInitialContact:
		return "INITIAL_CONTACT"
	case NotifySetWindowSize:
		return "SET_WINDOW_SIZE"
	case NotifyAdditionalTSPossible:
		return "ADDITIONAL_TS_POSSIBLE"
	case NotifyIPCompSupported:
		return "IPCOMP_SUPPORTED"
	case NotifyNATDetectionSourceIP:
		return "NAT_DETECTION_SOURCE_IP"
	case NotifyNATDetectionDestinationIP:
		return "NAT_DETECTION_DESTINATION_IP"
	case NotifyCookie:
		return "COOKIE"
	case NotifyUseTransportMode:
		return "USE_TRANSPORT_MODE"
	case NotifyHTTPCertLookupSupported:
		return "HTTP_CERT_LOOKUP_SUPPORTED"
	case NotifyRekeySA:
		return "REKEY_SA"
	case NotifyESPTFCPaddingNotSupported:
		return "ESP_TFC_PADDING_NOT_SUPPORTED"
	case NotifyNonFirstFragmentsAlso:
		return "NON_FIRST_FRAGMENTS_ALSO"
	case NotifyMOBIKESupported:
		return "MOBIKE_SUPPORTED"
	case NotifyAdditionalIP4Address:
		return "ADDITIONAL_IP4_ADDRESS"
	case NotifyAdditionalIP6Address:
		return "ADDITIONAL_IP6_ADDRESS"
	case NotifyNoAdditionalAddresses:
		return "NO_ADDITIONAL_ADDRESSES"
	case NotifyUpdateSAAddresses:
		return "UPDATE_SA_ADDRESSES"
	case NotifyCookie2:
		return "COOKIE2"
	case NotifyNoNATsAllowed:
		return "NO_NATS_ALLOWED"
	case NotifyAuthLifetime:
		return "AUTH_LIFETIME"
	case NotifyMultipleAuthSupported:
		return "MULTIPLE_AUTH_SUPPORTED"
	case NotifyAnotherAuthFollows:
		return "ANOTHER_AUTH_FOLLOWS"
	case NotifyRedirectSupported:
		return "REDIRECT_SUPPORTED"
	case NotifyRedirect:
		return "REDIRECT"
	case NotifyRedirectedFrom:
		return "REDIRECTED_FROM"
	case NotifyEAPOnlyAuthentication:
		return "EAP_ONLY_AUTHENTICATION"
	case NotifyChildlessIKEv2Supported:
		return "CHILDLESS_IKEV2_SUPPORTED"
	case NotifyQuickCrashDetection:
		return "QUICK_CRASH_DETECTION"
	case NotifyIKEv2FragmentationSupported:
		return "IKEV2_FRAGMENTATION_SUPPORTED"
	case NotifySignatureHashAlgorithms:
		return "SIGNATURE_HASH_ALGORITHMS"
	case NotifyUsePPK:
		return "USE_PPK"
	case NotifyPPKIdentity:
		return "PPK_IDENTITY"
	case NotifyNoPPKAuth:
		return "NO_PPK_AUTH"
	case NotifyIntermediateExchangeSupported:
		return "INTERMEDIATE_EXCHANGE_SUPPORTED"
	}
	return "NotifyType(" + strconv.Itoa(int(t)) + ")"
}

// HashAlgorithm is an entry of the SIGNATURE_HASH_ALGORITHMS notification (RFC 7427 section 4, IANA IKEv2 Hash Algorithms).
type HashAlgorithm uint16

const (
	HashSHA1     HashAlgorithm = 1
	HashSHA2_256 HashAlgorithm = 2
	HashSHA2_384 HashAlgorithm = 3
	HashSHA2_512 HashAlgorithm = 4
	HashIdentity HashAlgorithm = 5
)

// String returns the registry name, or HashAlgorithm(n) for unassigned values.
func (t HashAlgorithm) String() string {
	switch t {
	case HashSHA1:
		return "SHA1"
	case HashSHA2_256:
		return "SHA2_256"
	case HashSHA2_384:
		return "SHA2_384"
	case HashSHA2_512:
		return "SHA2_512"
	case HashIdentity:
		return "IDENTITY"
	}
	return "HashAlgorithm(" + strconv.Itoa(int(t)) + ")"
}

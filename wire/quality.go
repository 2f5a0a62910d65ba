package wire

// Quality issues and media directions carried in a signalling "quality" message ({"issue", "direction"}), in the
// flags of a call record and in metric labels.
const (
	// QualityOneWayAudio: media flows one way while the other direction has been silent past the threshold.
	QualityOneWayAudio = "one_way_audio"
	// QualityNoAudio: no media in either direction past the threshold, or none ever in a call that ended.
	QualityNoAudio = "no_audio"
	// QualityTranscoded: Asterisk had to transcode the call (record flag only).
	QualityTranscoded = "transcoded"

	// ToBrowser is the direction from Asterisk through Patchbay to the browser; ToAsterisk the other.
	ToBrowser  = "to_browser"
	ToAsterisk = "to_asterisk"
)

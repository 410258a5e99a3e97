// The Warden console's script.
